"""The node daemon's engine: follows the chain's events from a persisted cursor and performs this hospital's
general, validator and keeper duties.

Events only feed a watch list (`node_candidates`); duties come from each watched candidate's state on chain
(`dispatch.decide`). So a node that stops (cleanly or not) between reading an event and finishing the duty
finds the candidate again after a restart, and an event read twice does no harm. The watch list is swept
right after any candidate event and every `keeper_interval` seconds (deadlines pass without events). A
`PolicyChanged` event makes the node apply the acceptance policy the chain declares from then on.

A vote is cast only if neither this node's `node_votes` table, nor the chain's `hasVoted`, nor (signed votes) the
vault's ballot box records one: a crash between casting the vote and the table write never leads to a second
vote attempt. With signed votes (the site's `votes` setting) the node posts its vote to the ballot box, and on
every sweep tries to decide the open candidates it voted on with the ballots collected so far (`ballots.py`):
the node that completes a deciding set sends it in one `decide`. A vote the node could only cast after the
candidate was decided is not posted: it is counted as late, never as an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eth_utils import keccak
from sqlalchemy import Boolean, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.coalition import ballots
from tclearn.coalition import general as general_duty
from tclearn.coalition import keeper as keeper_duty
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.build import follow_policy
from tclearn.coalition.declared import check_expected, declared_policy
from tclearn.coalition.dispatch import Decision, Duty, decide, settled
from tclearn.config import load_deployment
from tclearn.errors import ContractRevert, TclearnError
from tclearn.ledger.events import EventReader, LedgerEvent
from tclearn.site.open import Site
from tclearn.state.db import Base, Database
from tclearn.types import ModelRecord, ModelState, VoteMode

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a duty that fails this often on one candidate is given up (the keeper still expires it)
SETTLING_EVENTS = frozenset({"Committed", "Rejected", "Expired", "Staled"})
CANDIDATE_EVENTS = frozenset({"Submitted", "GeneralReassigned", "CandidateOpened", "Voted", *SETTLING_EVENTS})


class WatchedCandidate(Base):
    """A candidate this node has seen submitted and that may still owe it a duty."""

    __tablename__ = "node_candidates"

    node: Mapped[str] = mapped_column(String(42), primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)


class CastVote(Base):
    """A vote this node cast (the chain is the authority; this is the node's own record)."""

    __tablename__ = "node_votes"

    node: Mapped[str] = mapped_column(String(42), primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approve: Mapped[bool] = mapped_column(Boolean)
    # the transaction this node sent with it: its `vote`, or the `decide` its signed vote completed (else None)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    # a signed vote: 0x keccak256 of its signature (the ballot box holds the vote itself)
    signature_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass
class NodeStats:
    """What the daemon reports on /health and /metrics (read from another thread: copy with `snapshot`)."""

    candidates_seen: int = 0
    votes: Counter[str] = field(default_factory=Counter)  # "approve" / "reject"
    duties: Counter[str] = field(default_factory=Counter)  # "open", "vote", "decide", "reassigned", "expired"
    errors: int = 0
    evaluations: int = 0
    evaluation_seconds: float = 0.0
    last_block: int = -1
    cursor: tuple[int, int] = (-1, -1)
    running: bool = False
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (duty, "refused" / "error")
    late_votes: int = 0  # signed votes not posted: the candidate was decided while this node assessed it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> NodeStats:
        with self.lock:
            return NodeStats(
                self.candidates_seen,
                Counter(self.votes),
                Counter(self.duties),
                self.errors,
                self.evaluations,
                self.evaluation_seconds,
                self.last_block,
                self.cursor,
                self.running,
                Counter(self.failures),
                self.late_votes,
            )


def chain_now(site: Site) -> int:
    """Unix seconds as the next block will see them: the wall clock, or the chain's if it runs ahead."""
    return max(int(time.time()), site.client.chain.timestamp())


class NodeRunner:
    """One hospital's node: `step()` reads new events and performs what is due; `run(stop)` loops it."""

    def __init__(
        self,
        site: Site,
        db: Database,
        *,
        keeper_interval: float | None = None,
        now: Callable[[], int] | None = None,
    ) -> None:
        self.site, self.db = site, db
        self.me = site.hospital.address
        self.name = site.hospital.name
        client = site.client
        self.reader = EventReader(
            client.w3,
            client.address,
            client.chain.chain_id,
            db,
            f"node:{self.me}",
            start_block=load_deployment(site.config.deployment).block,
            confirmations=site.config.confirmations,
        )
        self.keeper_interval = site.config.keeper_interval if keeper_interval is None else keeper_interval
        self.now = now or (lambda: chain_now(site))
        self.stats = NodeStats(cursor=self.reader.position)
        self._failures: Counter[tuple[int, Duty]] = Counter()
        self._due = True  # sweep once at start: candidates watched before a restart
        self._last_sweep = float("-inf")

    # ---- the loop ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Steps until `stop` is set; a duty in progress is finished first. Never raises."""
        self.stats.running = True
        log.info("%s: node started for %s (%s) at cursor %s", self.name, self.me, self._roles(), self.reader.position)
        try:
            while not stop.is_set():
                try:
                    self.step(stop)
                except Exception as exc:  # the chain or the database is unreachable: report, wait, retry
                    self._error(f"step failed: {exc}")
                stop.wait(self.site.config.poll_interval)
        finally:
            self.stats.running = False
            log.info("%s: node stopped at cursor %s", self.name, self.reader.position)

    def _roles(self) -> str:
        try:
            member = self.site.client.get_member(self.me)
        except TclearnError as exc:
            return f"roles unknown: {exc}"
        if member is None:
            return "not a registered member: it will only keep deadlines"
        state = "active" if member.active else "inactive"
        return f"{state} {', '.join(member.roles.names())}"

    def step(self, stop: threading.Event | None = None) -> int:
        """Reads new events, then sweeps the watch list if an event asked for it or the keeper interval passed;
        returns how many duties were performed."""
        self.reader.poll(self._on_event)
        position = self.reader.position
        with self.stats.lock:
            self.stats.cursor, self.stats.last_block = position, max(self.stats.last_block, position[0])
        if not self._due and time.monotonic() - self._last_sweep < self.keeper_interval:
            return 0
        self._due, self._last_sweep = False, time.monotonic()
        return self.sweep(stop)

    def _on_event(self, ev: LedgerEvent) -> None:
        if ev.name == "PolicyChanged":
            self._follow_policy()
            return
        if ev.name not in CANDIDATE_EVENTS or int(ev.args["id"]) == 0:  # model 0 is the genesis, no candidate
            return
        model_id = int(ev.args["id"])
        with self.db.session() as s:
            row = s.get(WatchedCandidate, (self.me, model_id))
            if row is None:
                s.add(WatchedCandidate(node=self.me, model_id=model_id, settled=ev.name in SETTLING_EVENTS))
                if ev.name == "Submitted":
                    with self.stats.lock:
                        self.stats.candidates_seen += 1
            elif ev.name in SETTLING_EVENTS:
                row.settled = True
        self._due = True

    def _follow_policy(self) -> None:
        """The coalition declared an acceptance policy: apply the one the chain declares now (a replayed old
        declaration changes nothing). One that cannot be read, or that this site does not expect, raises: the cursor
        stays before the event, and the node acts no more until it can apply the coalition's policy."""
        co = self.site.coalition
        policy, digest = declared_policy(co.client, co.store)
        if policy == co.policy:
            return
        check_expected(policy, digest, self.site.config.policy.expected())
        follow_policy(co, policy)
        log.info("%s: applying the coalition's acceptance policy 0x%s", self.name, digest.hex())

    def watched(self) -> list[int]:
        with self.db.session() as s:
            query = select(WatchedCandidate.model_id).where(
                WatchedCandidate.node == self.me, WatchedCandidate.settled.is_(False)
            )
            return sorted(s.scalars(query))

    def sweep(self, stop: threading.Event | None = None) -> int:
        """Performs every duty due on the watched candidates; one candidate's failure never stops the others."""
        ids = self.watched()
        if not ids:
            return 0
        client = self.site.client
        head, me, now = client.head(), client.get_member(self.me), self.now()
        done = 0
        for model_id in ids:
            if stop is not None and stop.is_set():
                break
            try:
                candidate = client.get_model(model_id, with_uri=False)
                if settled(candidate, head):
                    self._settle(model_id)
                    continue
                voted = self.voted(candidate)
                done += self._perform(candidate, decide(candidate, head, self.me, me, now, voted), now)
                if voted and self._signed and candidate.state is ModelState.OPEN and now <= candidate.voting_deadline:
                    done += self._decide(candidate)
            except Exception as exc:  # one bad candidate: count, log, go on with the others
                self._error(f"candidate {model_id}: {exc}")
        return done

    # ---- duties --------------------------------------------------------------------------------------

    @property
    def _signed(self) -> bool:
        return self.site.coalition.votes is VoteMode.SIGNED

    def voted(self, candidate: ModelRecord) -> bool:
        """Has this node voted on `candidate`: its own table, else the chain, else (signed votes) the vault's
        ballot box (asked only for open candidates)."""
        if candidate.state is not ModelState.OPEN:
            return False
        with self.db.session() as s:
            if s.get(CastVote, (self.me, candidate.id)) is not None:
                return True
        if self.site.client.has_voted(candidate.id, self.me):
            return True
        return self._signed and self.me in self.site.coalition.store.ballots(candidate.model_hash.hex())

    def _perform(self, candidate: ModelRecord, decision: Decision, now: int) -> int:
        duty = decision.duty
        key = (candidate.id, duty)
        if duty is Duty.NONE or self._failures[key] >= MAX_ATTEMPTS:
            return 0
        done: str | None
        try:
            if duty is Duty.OPEN:
                done = self._open(candidate)
            elif duty is Duty.VOTE:
                done = self._vote(candidate)
            else:
                done = self._keep(candidate, now)
        except ContractRevert as exc:
            if exc.error == "AlreadyVoted":  # must never happen: counted as an error
                self._failed(duty, "error")
                raise
            # the contract refused: the state moved on meanwhile (decided, expired, another keeper was first)
            log.warning("%s: %s on candidate %d refused by the contract: %s", self.name, duty, candidate.id, exc)
            self._failures[key] += 1
            self._failed(duty, "refused")
            return 0
        except Exception:
            self._failures[key] += 1
            self._failed(duty, "error")
            if self._failures[key] >= MAX_ATTEMPTS:
                log.error("%s: giving up %s on candidate %d", self.name, duty, candidate.id)
            raise
        if done is None:
            return 0
        with self.stats.lock:
            self.stats.duties[done] += 1
        return 1

    def _open(self, candidate: ModelRecord) -> str:
        ok, report_hash, _ = general_duty.open_candidate(self.site.coalition, self.site.hospital, candidate)
        verdict = "opened it for voting" if ok else "rejected it (integrity)"
        log.info("%s: general of candidate %d: %s; report %s", self.name, candidate.id, verdict, report_hash[:16])
        return "open"

    def _vote(self, candidate: ModelRecord) -> str | None:
        co = self.site.coalition
        before = co.clock.seconds["evaluation"]
        cast = validator_duty.vote(co, self.site.hospital, candidate)
        seconds = co.clock.seconds["evaluation"] - before
        assessment, outcome = cast.assessment, cast.outcome
        choice = "approve" if assessment.approve else "reject"
        with self.stats.lock:
            self.stats.evaluations += 1
            self.stats.evaluation_seconds += seconds
            self.stats.late_votes += cast.late
        if cast.late:
            log.info(
                "%s: candidate %d was decided before its vote (%s) was cast: not posted",
                self.name,
                candidate.id,
                choice,
            )
            return None
        with self.db.session() as s:
            s.add(
                CastVote(
                    node=self.me,
                    model_id=candidate.id,
                    approve=assessment.approve,
                    tx_hash=None if outcome is None else outcome.tx.tx_hash,
                    signature_hash=None if cast.signed is None else "0x" + keccak(cast.signed.signature).hex(),
                    at=datetime.now(UTC),
                )
            )
        with self.stats.lock:
            self.stats.votes[choice] += 1
            if outcome is not None and cast.signed is not None:
                self.stats.duties["decide"] += 1
        scores = assessment.candidate
        shown = "unscored" if scores is None else f"G {scores.global_:.4f} L {scores.local:.4f}"
        log.info(
            "%s: voted %s on candidate %d (%s; head G %.4f L %.4f; %s) -> %s",
            self.name,
            choice,
            candidate.id,
            shown,
            assessment.head.global_,
            assessment.head.local,
            assessment.reason,
            "posted" if outcome is None else outcome.state.name.lower(),
        )
        return "vote"

    def _decide(self, candidate: ModelRecord) -> int:
        """Sends the ballots collected on `candidate` in one `decide` if they decide it (paid by this node)."""
        outcome = ballots.try_decide(self.site.coalition, self.site.hospital.account, candidate)
        if outcome is None:
            return 0
        log.info(
            "%s: decided candidate %d with the ballots collected: %s",
            self.name,
            candidate.id,
            outcome.state.name.lower(),
        )
        with self.stats.lock:
            self.stats.duties["decide"] += 1
        return 1

    def _keep(self, candidate: ModelRecord, now: int) -> str | None:
        done = keeper_duty.keep(self.site.client, self.site.hospital.account, candidate.id, now)
        if done is not None:
            log.info("%s: keeper: candidate %d %s", self.name, candidate.id, done)
        return done

    # ---- bookkeeping ---------------------------------------------------------------------------------

    def _settle(self, model_id: int) -> None:
        with self.db.session() as s:
            row = s.get(WatchedCandidate, (self.me, model_id))
            if row is not None:
                row.settled = True

    def _failed(self, duty: Duty, reason: str) -> None:
        with self.stats.lock:
            self.stats.failures[(duty.value, reason)] += 1

    def _error(self, message: str) -> None:
        with self.stats.lock:
            self.stats.errors += 1
        log.error("%s: %s", self.name, message)

    def votes_cast(self) -> dict[int, bool]:
        """model id -> approve, from this node's own table."""
        with self.db.session() as s:
            rows = s.scalars(select(CastVote).where(CastVote.node == self.me))
            return {r.model_id: r.approve for r in rows}
