"""Typed records for everything that is hashed onto the chain or sent between roles.

Each record is a frozen dataclass with one canonical byte encoding (`encode`, the canonical JSON of
`tclearn.canonical`) and a strict parser (`parse`) that names what is wrong: a candidate's metadata, the
general's integrity report, a validator's vote evidence. Every record carries a `schema` version. A blob that
does not parse as the record it should be raises `IntegrityError` — for the general, an integrity failure
named in its report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, TypeAdapter, ValidationError

from tclearn.canonical import canonical_json, sha256_hex
from tclearn.errors import IntegrityError

SCHEMA = 1
Mode = Literal["incremental", "fedavg"]


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type) -> TypeAdapter[Any]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


class Record:
    """Canonical encoding and strict parsing for a frozen dataclass (mixed into each record below)."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid", strict=True)
    KIND: ClassVar[str] = "record"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json")
        return data

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    def sha256(self) -> str:
        return sha256_hex(self.encode())

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        """The record in `raw`, or `IntegrityError` naming the first fields that are wrong."""
        try:
            value: Self = _adapter(cls).validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise IntegrityError(f"the {cls.KIND} does not parse: {problems}") from None
        schema = getattr(value, "schema", SCHEMA)
        if schema != SCHEMA:
            raise IntegrityError(f"the {cls.KIND} has schema {schema}; this node reads {SCHEMA}")
        return value


@dataclass(frozen=True)
class TrainingFacts(Record):
    """What a candidate declares about how it was trained (an aggregate: the smallest batch, all samples)."""

    KIND = "training facts"
    samples: int
    epochs: int
    batch_size: int
    optimiser: str
    lr: float
    seed: int
    loss: str
    steps: int
    duration_s: float
    device: str
    amp: bool = False
    final_loss: float | None = None  # None where training cannot see its loss (encrypted weights)
    augmentation: tuple[str, ...] = ()  # the MONAI random transforms applied, by name (tclearn.learning.augment)
    patch: tuple[int, ...] | None = None  # trained on random crops of this size

    def to_dict(self) -> dict[str, Any]:
        return self.to_json()


@dataclass(frozen=True)
class DataCompression(Record):
    """The coding the training images had (`tclearn.learning.coding`): how many were JPEG 2000 (files `.jp2` /
    `.j2k`, or DICOM in a JPEG 2000 transfer syntax), how many of those lossy, and the highest ratio among them
    (the images' raw bytes over their coded bytes)."""

    KIND = "data compression"
    coded: int
    lossy: int
    max_ratio: float


@dataclass(frozen=True)
class DataSummary(Record):
    """A fingerprint of the training-set manifest (`tclearn.learning.manifest`): never the data. With it, how
    many of the training images the coalition's committee chose for annotation (`tclearn.learning.active`) and
    the compression the images had (None: none was coded)."""

    KIND = "data summary"
    manifest_sha256: str
    files: int
    bytes: int
    committee_chosen: int = 0
    compression: DataCompression | None = None


@dataclass(frozen=True)
class ModelDescription(Record):
    """The coalition's model as its backend describes it: a family, its configuration and one fingerprint.

    Plain and sealed models: the MONAI config and `arch_hash` (config and weight layout). Encrypted models:
    the model shape and the public context it lives under, and the hash of both."""

    KIND = "model description"
    family: str
    config: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True)
class Contribution(Record):
    """One member's signed share of a FedAvg round (`tclearn.coalition.fedavg`)."""

    KIND = "contribution"
    member: str
    model_hash: str
    samples: int
    batch_size: int
    signature: str
    update_norm: float | None = None  # its distance from the round's head over the head's norm (`learning.update`)


@dataclass(frozen=True)
class Exclusion(Record):
    """A signed contribution the round's aggregator left out of the aggregate, and why (beyond the coalition's
    update bound, or it could not be opened); validators re-check that the reason holds."""

    KIND = "exclusion"
    contribution: Contribution
    reason: str


@dataclass(frozen=True)
class Aggregation(Record):
    KIND = "aggregation"
    rule: str
    contributions: tuple[Contribution, ...]
    excluded: tuple[Exclusion, ...] = ()


@dataclass(frozen=True)
class Privacy(Record):
    """How a candidate was trained with differential privacy (DP-SGD) and the epsilon it spends at `delta`: the
    general recomputes `epsilon` from the mechanism (`tclearn.learning.privacy`), the chain charges it."""

    KIND = "privacy facts"
    mechanism: Literal["dp-sgd"]
    accountant: str  # rdp | prv (tclearn.learning.privacy.Accountant)
    unit: str  # sample | patient: what one clipped gradient covers
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float  # each unit's chance of joining a step (Poisson sampling)
    steps: int
    delta: float
    epsilon: float
    units: int  # privacy units trained on (samples, or patients)


@dataclass(frozen=True)
class CandidateMetadata(Record):
    """What a proposer stores beside its model blob; its sha256 is the candidate's `metadataHash` on chain."""

    KIND = "candidate metadata"
    variant: str
    mode: Mode
    parent: str  # sha256 of the parent's blob
    model: ModelDescription
    training: TrainingFacts
    tclearn_version: str
    data: DataSummary | None = None  # None for an aggregate (each contribution has its own data)
    scores: dict[str, float] = field(default_factory=dict)  # the proposer's own scores, if it gives any
    aggregation: Aggregation | None = None  # fedavg mode
    privacy: Privacy | None = None
    watermark: str | None = None  # a commitment to the watermark the model carries
    # ||candidate - parent|| / ||parent|| over floating tensors (`tclearn.learning.update`), which the general
    # re-measures; None where the variant cannot measure it in clear (C) or the record predates it
    update_norm: float | None = None
    schema: int = SCHEMA


@dataclass(frozen=True)
class Check(Record):
    KIND = "check"
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class IntegrityReport(Record):
    """The general's report on a candidate; its sha256 is `reportHash` in `openCandidate`."""

    KIND = "integrity report"
    candidate: int
    model_hash: str
    general: str
    ok: bool
    checks: tuple[Check, ...]
    schema: int = SCHEMA


@dataclass(frozen=True)
class StratumVerdict(Record):
    """One stratum of G or L in a vote's evidence (`tclearn.coalition.policy`): both models' scores on it and
    whether it passed. `judged`: both measured it on the same samples, at least the policy's `min_stratum`;
    `ok` is False only where it fails the candidate (below the head's beyond `tolerance`, or not comparable:
    `head` None where the head has no such stratum, `candidate` None where the candidate has none)."""

    KIND = "stratum verdict"
    set: str  # "G" or "L"
    name: str  # e.g. "finding:small", "class:benign", "label:liver"
    samples: int
    candidate: float | None
    head: float | None
    tolerance: float
    judged: bool
    ok: bool


@dataclass(frozen=True)
class VoteEvidence(Record):
    """Why a validator voted as it did; its sha256 is the vote's `evidenceHash`."""

    KIND = "vote evidence"
    candidate: int
    parent: int
    validator: str
    metric: str
    candidate_global: float | None  # None: the candidate could not be opened or failed a check
    candidate_local: float | None
    head_global: float
    head_local: float
    tolerance_global: float
    tolerance_local: float
    local_samples: int
    approve: bool
    reason: str
    local_metric: str = ""  # the metric on L: `metric`, or recall / specificity for a set of one class ("": metric)
    strata: tuple[StratumVerdict, ...] = ()  # every stratum of G and L, compared (none where not scored)
    best_global: float | None = None  # the best G score of the committed lineage (the drift bound's reference)
    proposer_change: float | None = None  # what the proposer's committed increments changed G by, in all
    max_drift: float | None = None  # how far below the best the candidate may fall on G, or the proposer walk it
    policy: str = ""  # the sha256 of the acceptance policy applied ("": written before policies were declared)
    schema: int = SCHEMA


@dataclass(frozen=True)
class SummaryScores(Record):
    KIND = "summary scores"
    coalition: float
    centralized: float | None  # None: the run trained no baselines
    single: dict[str, float]


@dataclass(frozen=True)
class SummaryGas(Record):
    KIND = "summary gas"
    submit: int
    open: int
    vote: int
    per_committed_round: int


@dataclass(frozen=True)
class RunSummary(Record):
    """A simulated run as `summary.json` records it (its keys are a published format: no schema field)."""

    KIND = "run summary"
    variant: str
    chain: str
    mode: str
    metric: str
    members: tuple[str, ...]
    validators: tuple[str, ...]
    byzantine: tuple[str, ...]
    candidates: tuple[dict[str, Any], ...]  # `tclearn.coalition.rounds.CandidateRow.to_json()`, one per candidate
    committed: int
    rejected: int
    poisoned_submitted: int
    poisoned_committed: int
    honest_rejected: int
    scores: SummaryScores
    gas: SummaryGas
    audit_ok: bool
    seconds: float
    # per attack ("none": honest candidates): submitted, refused (by the general), rejected, committed, open
    attacks: dict[str, dict[str, int]] = field(default_factory=dict)
