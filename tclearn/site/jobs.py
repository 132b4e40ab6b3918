"""The member service's jobs: persisted in the site's state database, run one at a time in a background thread.

Two kinds. A **train** job runs the member's duty (`tclearn.coalition.member.propose`: pull the head, train on
local data, store, submit). A **finetune** job personalises the committed head on local data for the hospital's
own use (`tclearn.site.finetune`: nothing goes to the vault or the chain; the model and its record are written
under the site's `finetuned` folder). A row records its kind, who asked for it (`operator` or a peer's address),
its state (queued, running, done, failed, cancelled), its phase and progress, and the candidate it submitted,
the fine-tuning record it wrote, or the error that stopped it. A site runs one job at a time: asking while a job
is queued or running is a 409 (there is no queue: a second increment on the same head would only be staled by
the first, and both kinds share the site's CPUs or GPU).

Only the owner sees or cancels a job; anyone else gets 404, exactly as for an id that does not exist, so job
ids do not leak. Jobs that were queued or running when the service stopped are marked failed on start.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.coalition.context import Clock, Coalition
from tclearn.coalition.member import PROPOSAL_PHASES, propose
from tclearn.errors import ConflictError, NotFoundError, TclearnError, TrainingCancelled
from tclearn.learning.train import CancelToken
from tclearn.site.finetune import FINETUNE_PHASES, FinetuneOptions, finetune, plan
from tclearn.site.open import Site
from tclearn.state.db import Base, Database

log = logging.getLogger(__name__)
OPERATOR = "operator"


class JobKind(enum.StrEnum):
    TRAIN = "train"  # an increment, submitted as a candidate
    FINETUNE = "finetune"  # the head personalised on local data, kept by the site


# Share of the whole job each phase of a kind takes, for one progress figure in [0, 1].
PHASE_WEIGHTS = {
    JobKind.TRAIN: {"pulling": 0.05, "training": 0.85, "storing": 0.05, "submitting": 0.05},
    JobKind.FINETUNE: {"pulling": 0.05, "scoring": 0.05, "training": 0.8, "rescoring": 0.05, "saving": 0.05},
}
assert tuple(PHASE_WEIGHTS[JobKind.TRAIN]) == PROPOSAL_PHASES
assert tuple(PHASE_WEIGHTS[JobKind.FINETUNE]) == FINETUNE_PHASES
Progress = Callable[[str, float], None]
# A job's work: on the coalition (timed by the job's own clock), stoppable and reporting its phases; returns
# the row's fields that say what it did.
Work = Callable[[Coalition, CancelToken, Progress], dict[str, object]]


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class TrainJobRow(Base):
    __tablename__ = "member_train_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.TRAIN.value, server_default=JobKind.TRAIN.value)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    timings: Mapped[str] = mapped_column(Text, default="{}")  # JSON: seconds per phase of the proposal
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: a finetune job's record and folder


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    owner: str
    state: JobState
    phase: str
    progress: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    model_id: int | None
    model_hash: str | None
    error: str | None
    timings: dict[str, float]
    result: dict[str, Any] | None


def _job(row: TrainJobRow) -> Job:
    return Job(
        row.id,
        JobKind(row.kind),
        row.owner,
        JobState(row.state),
        row.phase,
        row.progress,
        row.created_at,
        row.started_at,
        row.finished_at,
        row.model_id,
        row.model_hash,
        row.error,
        json.loads(row.timings),
        None if row.result is None else json.loads(row.result),
    )


def overall_progress(phase: str, fraction: float, kind: JobKind = JobKind.TRAIN) -> float:
    """One figure in [0, 1] for `fraction` of `phase` of a `kind` job done (earlier phases count as complete)."""
    weights = PHASE_WEIGHTS[kind]
    phases = list(weights)
    done = sum(weights[p] for p in phases[: phases.index(phase)])
    return round(min(1.0, done + weights[phase] * min(max(fraction, 0.0), 1.0)), 4)


class JobRunner:
    """Starts, tracks and cancels the site's jobs (one at a time)."""

    def __init__(self, site: Site, db: Database, *, report_every_s: float = 0.25) -> None:
        self.site, self.db, self.report_every_s = site, db, report_every_s
        self._lock = threading.Lock()
        self._active: tuple[str, CancelToken, threading.Thread] | None = None
        with db.session() as s:
            for row in s.scalars(select(TrainJobRow).where(TrainJobRow.state.in_(["queued", "running"]))):
                row.state, row.finished_at = JobState.FAILED.value, time.time()
                row.error = "interrupted: the member service stopped while the job ran"

    def start(self, owner: str) -> Job:
        """Queues a training job for `owner` and starts it; 409 while another job is queued or running."""

        def work(co: Coalition, token: CancelToken, progress: Progress) -> dict[str, object]:
            self.site.reread()  # annotated images added since the site opened join this increment
            proposal = propose(co, self.site.hospital, cancel=token, progress=progress)
            return {"model_id": proposal.submission.model_id, "model_hash": proposal.model_hash}

        return self._start(owner, JobKind.TRAIN, work)

    def start_finetune(self, owner: str, options: FinetuneOptions | None = None) -> Job:
        """Queues a fine-tuning job for `owner` and starts it. What would refuse it (variant C, no increment
        committed yet, too little data, bad options or folder) is raised here, before anything is queued."""
        site = self.site
        plan(site.coalition, site.hospital, site.config.finetuned, options)

        def work(co: Coalition, token: CancelToken, progress: Progress) -> dict[str, object]:
            site.reread()
            done = finetune(
                co, site.hospital, site.config.finetuned, options, run_id=job_id, cancel=token, progress=progress
            )
            return {"result": json.dumps(done.summary())}

        job_id = uuid.uuid4().hex
        return self._start(owner, JobKind.FINETUNE, work, job_id)

    def _start(self, owner: str, kind: JobKind, work: Work, job_id: str | None = None) -> Job:
        with self._lock:
            if self._active is not None:
                raise ConflictError(
                    "this site is already running a job (training or fine-tuning); one job runs at a time, "
                    "try again when it ends"
                )
            row = TrainJobRow(
                id=job_id or uuid.uuid4().hex,
                kind=kind.value,
                owner=owner,
                state=JobState.QUEUED.value,
                phase=next(iter(PHASE_WEIGHTS[kind])),
                progress=0.0,
                created_at=time.time(),
                timings="{}",
            )
            with self.db.session() as s:
                s.add(row)
            token = CancelToken()
            args = (row.id, kind, work, token)
            thread = threading.Thread(target=self._run, args=args, name=f"{kind.value}-{row.id}", daemon=True)
            self._active = (row.id, token, thread)
            thread.start()
        return _job(row)

    def _row(self, owner: str, job_id: str) -> Job:
        with self.db.session() as s:
            row = s.get(TrainJobRow, job_id)
            if row is None or row.owner != owner:  # another caller's job is as absent as a missing one
                raise NotFoundError(f"no job {job_id!r} of yours on this site", job_id=job_id)
            return _job(row)

    def get(self, owner: str, job_id: str) -> Job:
        return self._row(owner, job_id)

    def jobs(self, owner: str, limit: int = 100) -> list[Job]:
        """`owner`'s jobs, newest first."""
        with self.db.session() as s:
            query = select(TrainJobRow).where(TrainJobRow.owner == owner)
            rows = s.scalars(query.order_by(TrainJobRow.created_at.desc()).limit(limit))
            return [_job(r) for r in rows]

    def cancel(self, owner: str, job_id: str) -> Job:
        """Asks `owner`'s running job to stop (it stops at its next training step or phase); 409 once it ended."""
        job = self._row(owner, job_id)
        with self._lock:
            active = self._active
            if job.state.final or active is None or active[0] != job_id:
                raise ConflictError(f"job {job_id} has already ended ({job.state.value})", state=job.state.value)
            active[1].cancel()
        return job

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until the active job (if any) ends."""
        active = self._active
        if active is not None:
            active[2].join(timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancels the active job and waits for it to stop."""
        active = self._active
        if active is not None:
            active[1].cancel()
            active[2].join(timeout)

    def _update(self, job_id: str, **values: object) -> None:
        with self.db.session() as s:
            row = s.get(TrainJobRow, job_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)

    def _run(self, job_id: str, kind: JobKind, work: Work, token: CancelToken) -> None:
        clock = Clock()
        co = self.site.coalition.timed_by(clock)  # this job's phase timings, nobody else's
        reported = [0.0]

        def progress(phase: str, fraction: float) -> None:
            now = time.monotonic()
            if fraction in (0.0, 1.0) or now - reported[0] >= self.report_every_s:
                reported[0] = now
                self._update(job_id, phase=phase, progress=overall_progress(phase, fraction, kind))

        self._update(job_id, state=JobState.RUNNING.value, started_at=time.time())
        outcome: dict[str, object]
        try:
            done = work(co, token, progress)
        except TrainingCancelled as exc:
            outcome = {"state": JobState.CANCELLED.value, "error": str(exc)}
        except TclearnError as exc:
            outcome = {"state": JobState.FAILED.value, "error": str(exc)}
        except Exception as exc:  # a bug must not leave the job "running" forever
            log.exception("%s job %s failed unexpectedly", kind.value, job_id)
            outcome = {"state": JobState.FAILED.value, "error": f"internal error: {type(exc).__name__}: {exc}"}
        else:
            outcome = {"state": JobState.DONE.value, "progress": 1.0, **done}
        timings = {phase: round(seconds, 4) for phase, seconds in clock.seconds.items()}
        self._update(job_id, finished_at=time.time(), timings=json.dumps(timings), **outcome)
        with self._lock:
            self._active = None
