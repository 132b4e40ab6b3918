"""Local fine-tuning: a hospital personalises the coalition's committed head on its own data, for its own use.

"Train one last time locally": the head is pulled and opened as any increment's parent is (re-hashed by the
vault, decrypted with the hospital's key in variant B), scored on the hospital's local test set L, trained on
its training data with the site's `[training]` settings (`FinetuneOptions` override some), and scored on L
again. The result never leaves the site: nothing is stored in the vault, nothing is sent to the chain. It is
one folder under the site's `finetuned` setting, written atomically (a staging folder renamed into place):
`model.safetensors` and `model.json` (the model file `tclearn predict --model` reads, `tclearn.learning
.modelfile`) and `model.meta.json`, the `FinetuneRecord` (the head it started from, L before and after, the
training facts).

Refused before anything is pulled or written, each with one clear error: variant C (the head is encrypted
under the supervisor's key: 409), a coalition whose head is still the genesis (no increment committed: 409),
training data that cannot fill one batch or an empty L (400), a `finetuned` path that is not a writable
folder (400). A score after below the score before is a result, not an error: the record says both.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tclearn import __version__
from tclearn.coalition.backend import TensorBackend, tensors
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.member import report_phase
from tclearn.errors import ConfigError, ConflictError, DataError
from tclearn.learning.evaluate import Evaluation, evaluate, headline_metric
from tclearn.learning.modelfile import save_metadata, save_model
from tclearn.learning.train import CancelToken, TrainConfig, train_increment
from tclearn.protocol import GENESIS

RECORD_SCHEMA = "tclearn.finetune/1"
MODEL_FILE = "model.safetensors"  # beside it: model.json (the config) and model.meta.json (the record)
FINETUNE_PHASES = ("pulling", "scoring", "training", "rescoring", "saving")
Progress = Callable[[str, float], None]  # (phase, fraction of that phase done), phases as above


@dataclass(frozen=True)
class FinetuneOptions:
    """What a fine-tuning run changes in the site's `[training]` settings (None: the setting as it is)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None

    def applied(self, training: TrainConfig) -> TrainConfig:
        """`training` with these options; `ConfigError` naming a bad value (TrainConfig checks it again)."""
        given = {name: value for name, value in dataclasses.asdict(self).items() if value is not None}
        return dataclasses.replace(training, **given)


@dataclass(frozen=True)
class LocalScores:
    """The model on the hospital's local test set L, before and after fine-tuning (`metric` is the headline)."""

    metric: str
    samples: int
    before: float | None  # None only where the metric is undefined on L
    after: float | None
    metrics_before: dict[str, float | None]
    metrics_after: dict[str, float | None]


@dataclass(frozen=True)
class FinetuneRecord:
    """What one fine-tuning run did, written beside its model as `model.meta.json`."""

    site: str
    address: str
    variant: str
    head_id: int
    head_hash: str  # the head's hash on chain (the sealed blob's in variant B)
    model: dict[str, Any]  # the model config (as in model.json)
    training: dict[str, Any]  # the run's TrainingFacts
    local_test: LocalScores
    model_file: str
    model_sha256: str  # of the model file's bytes
    created_at: str  # ISO 8601, UTC
    tclearn_version: str
    schema: str = RECORD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Finetuned:
    """A finished run: its record and the folder holding its model."""

    record: FinetuneRecord
    folder: Path

    @property
    def model_path(self) -> Path:
        return self.folder / self.record.model_file

    def summary(self) -> dict[str, Any]:
        """The record and where it lies (what the member API's job result holds)."""
        return {**self.record.to_dict(), "folder": str(self.folder)}


@dataclass(frozen=True)
class Plan:
    """A run that passed every check: the backend that opens the head, the training settings and the head."""

    backend: TensorBackend
    training: TrainConfig
    head_id: int


def refusal(head_id: int, train_samples: int, test_samples: int, batch_size: int, site: str) -> str | None:
    """Why a run cannot start on these facts (None: it can). The rule, without I/O."""
    if head_id == GENESIS:
        return (
            "the coalition has committed no increment yet: its head is the genesis model 0; "
            "fine-tune once a candidate has committed"
        )
    if train_samples < batch_size:
        return (
            f"{site} has {train_samples} training sample(s), fewer than one batch of {batch_size}; "
            "lower the batch size (not below the coalition's minimum) or add data"
        )
    if test_samples == 0:
        return f"{site} has no local test set (L) to score the model on; add images to its test folder"
    return None


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"finetuned must be a folder for fine-tuned models; {str(folder)!r} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"finetuned: cannot create the folder {str(folder)!r}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"finetuned: the folder {str(folder)!r} is not writable by this user")


def plan(co: Coalition, me: Hospital, folder: Path, options: FinetuneOptions | None = None) -> Plan:
    """Every check before a run, in the order a user fixes them; raises the one that fails."""
    backend = tensors(co.backend, "fine-tuning")  # variant C: ConflictError, no member opens the head
    training = (options or FinetuneOptions()).applied(backend.training)
    head_id = co.client.head()
    problem = refusal(head_id, len(me.train), len(me.local_test), training.batch_size, me.name)
    if problem is not None:
        raise (ConflictError if head_id == GENESIS else DataError)(problem)
    _check_folder(folder)
    return Plan(backend, training, head_id)


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics as JSON holds them: an undefined one (NaN, e.g. AUC on one class) is null."""
    return {name: value if math.isfinite(value) else None for name, value in metrics.items()}


def _scores(before: Evaluation, after: Evaluation) -> LocalScores:
    metric = headline_metric(before.task)
    old, new = _finite(before.metrics), _finite(after.metrics)
    return LocalScores(metric, before.samples, old.get(metric), new.get(metric), old, new)


def write_atomically(folder: Path, name: str, write: Callable[[Path], None]) -> Path:
    """`folder/name`, filled by `write(staging)` in a staging folder beside it and renamed into place: a reader
    sees the whole result or none, and a failed or interrupted `write` leaves nothing behind."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))  # mode 0700: the hospital's alone
    try:
        write(staging)
        target = folder / name
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def run_name(head_id: int, run_id: str, now: datetime.datetime) -> str:
    """A run's folder name: sortable by time, naming the head it started from."""
    return f"{now:%Y%m%dT%H%M%SZ}-head{head_id}-{run_id[:8]}"


def finetune(
    co: Coalition,
    me: Hospital,
    folder: Path,
    options: FinetuneOptions | None = None,
    *,
    run_id: str,
    cancel: CancelToken | None = None,
    progress: Progress | None = None,
) -> Finetuned:
    """Fine-tunes the committed head on `me`'s data into a new folder under `folder` (see the module).

    `cancel` stops it at the next training step or phase boundary (`TrainingCancelled`; nothing is written);
    `progress(phase, fraction)` follows it through `FINETUNE_PHASES`. Time is counted on `co.clock`.
    """
    chosen = plan(co, me, folder, options)
    backend, training, clock = chosen.backend, chosen.training, co.clock
    report_phase(progress, "pulling", 0.0, cancel)
    head_hash = co.client.get_model(chosen.head_id, with_uri=False).model_hash.hex()
    head = backend.network(backend.open(me, head_hash))  # re-hashed against the chain's hash by the store
    report_phase(progress, "scoring", 0.0, cancel)
    with clock("evaluation"):
        before = evaluate(head, me.local_test, device=training.device)
    report_phase(progress, "training", 0.0, cancel)
    on_step = None if progress is None else lambda done, total: progress("training", done / total)
    with clock("training"):
        increment = train_increment(head, me.train, training, cancel, on_step)
    report_phase(progress, "rescoring", 0.0, cancel)
    with clock("evaluation"):
        after = evaluate(backend.network(increment.weights), me.local_test, device=training.device)
    report_phase(progress, "saving", 0.0, cancel)
    now = datetime.datetime.now(datetime.UTC)
    written: list[FinetuneRecord] = []

    def write(staging: Path) -> None:
        path = save_model(staging / MODEL_FILE, increment.weights, backend.config)
        record = FinetuneRecord(
            site=me.name,
            address=me.address,
            variant=backend.variant.name,
            head_id=chosen.head_id,
            head_hash=head_hash,
            model=backend.config.to_dict(),
            training=increment.facts.to_dict(),
            local_test=_scores(before, after),
            model_file=MODEL_FILE,
            model_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            created_at=now.isoformat(timespec="seconds"),
            tclearn_version=__version__,
        )
        save_metadata(path, record.to_dict())
        written.append(record)

    with clock("saving"):
        target = write_atomically(folder, run_name(chosen.head_id, run_id, now), write)
    if progress is not None:
        progress("saving", 1.0)
    return Finetuned(written[0], target)
