"""The member API's response bodies (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tclearn.learning.choices import DEFAULT_DENSITY, DEFAULT_MEASURE, Measure, Method
from tclearn.site.jobs import Job, JobKind, JobState


class Health(BaseModel):
    status: str = Field(description="'ok' when the service answers")
    site: str = Field(description="this hospital's name in its member.toml")
    version: str


class SiteInfo(BaseModel):
    name: str
    address: str = Field(description="this hospital's chain account")


class CoalitionInfo(BaseModel):
    chain_id: int
    chain: str = Field(description="the JSON-RPC URL this service reads the chain from")
    contract: str = Field(description="address of the Coalition contract")
    variant: str = Field(description="A (models in clear), B (sealed per member) or C (supervisor's key)")
    head: int = Field(description="id of the committed model every increment trains on")
    models: int = Field(description="models on chain: genesis and every candidate")
    active_members: int
    site: SiteInfo


class ModelSummary(BaseModel):
    id: int
    parent_id: int
    state: str = Field(description="submitted, open, committed, rejected, expired or stale")
    head: bool = Field(description="whether this is the coalition's head")
    proposer: str
    proposer_name: str
    model_hash: str = Field(description="sha256 of the model blob in the vault (the ciphertext in variant B)")
    metadata_hash: str
    uri: str
    eligible: int = Field(description="validators that may vote on it")
    approvals: int
    rejections: int


class VoteOut(BaseModel):
    validator: str
    validator_name: str
    approve: bool
    score_global: float = Field(description="the candidate's score on the global test set G")
    score_local: float = Field(description="its score on the validator's own test set L")
    evidence_hash: str = Field(description="sha256 of the vote's evidence document in the vault")
    block: int


class ModelDetail(ModelSummary):
    generals: list[str] = Field(description="the general drawn first, then every reassignment")
    report_hash: str | None = Field(description="the general's integrity report (or rejection evidence)")
    reject_reason: str | None
    submitted_block: int
    votes: list[VoteOut]


class JobOut(BaseModel):
    id: str
    kind: JobKind = Field(description="train (an increment, submitted) or finetune (kept by this hospital)")
    owner: str = Field(description="'operator' or the peer's address: only the owner sees the job")
    state: JobState
    phase: str = Field(
        description="train: pulling, training, storing or submitting; finetune: pulling, scoring, training, "
        "rescoring or saving"
    )
    progress: float = Field(ge=0, le=1)
    created_at: float
    started_at: float | None
    finished_at: float | None
    model_id: int | None = Field(description="the candidate a train job submitted")
    model_hash: str | None
    error: str | None = Field(description="why the job failed or stopped")
    timings: dict[str, float] = Field(
        description="seconds per phase (training, evaluation, vault, crypto, ledger, saving)"
    )
    result: dict[str, Any] | None = Field(
        description="a finetune job's record: the head it started from, its score on L before and after, the "
        "training facts, and the folder holding the model (docs/member-api.md)"
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**job.__dict__)


class FinetuneIn(BaseModel):
    """Overrides of the site's [training] settings for one fine-tuning run (absent: the setting as it is)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)


class BoxOut(BaseModel):
    label: str
    min_row: int
    min_col: int
    max_row: int = Field(description="exclusive")
    max_col: int = Field(description="exclusive")
    probability: float = Field(description="mean foreground probability inside the component")
    area: int = Field(description="pixels in the component")


class Prediction(BaseModel):
    model_id: int
    image: str = Field(description="the uploaded file's name")
    shape: list[int] = Field(description="channels, rows, columns as read")
    threshold: float
    min_area: int
    boxes: list[BoxOut]


# ---- governance ---------------------------------------------------------------------------------------------


class BallotOut(BaseModel):
    member: str
    member_name: str
    approve: bool
    block: int


class ProposalOut(BaseModel):
    id: int
    kind: str = Field(description="admit, roles, remove, parameters or supervisor")
    action: dict[str, Any] = Field(description="the action's fields as proposed")
    description: str = Field(description="the action in words")
    proposer: str
    proposer_name: str
    state: str = Field(description="pending, executed, rejected or expired (pending past its deadline)")
    eligible: int = Field(description="active members when it was proposed: they alone may vote on it")
    approvals: int
    needed: int = Field(description="approvals that carry it: two thirds of the eligible members")
    rejections: int
    deadline: int = Field(description="unix time after which it can no longer be voted on or executed")
    executable: bool = Field(description="pending with enough approvals: anyone may execute it")
    ballots: list[BallotOut]


class _ProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AdmitIn(_ProposalIn):
    kind: Literal["admit"]
    account: str
    roles: list[str] = Field(default=["member", "validator"], description="member, validator, auditor, supervisor")
    encryption_key: str = Field(default="00" * 32, description="its X25519 public key, 32 bytes hex")
    name: str = ""


class RolesIn(_ProposalIn):
    kind: Literal["roles"]
    account: str
    roles: list[str]


class RemoveIn(_ProposalIn):
    kind: Literal["remove"]
    account: str


class ParametersIn(_ProposalIn):
    """The coalition's current parameters with those given changed (absent: unchanged)."""

    kind: Literal["parameters"]
    policy: dict[str, Any] | None = Field(
        default=None,
        description="a new acceptance policy: its settings (absent ones take their defaults); its record is stored "
        "in the vault and its hash proposed",
    )
    general_timeout: int | None = Field(default=None, gt=0)
    voting_timeout: int | None = Field(default=None, gt=0)
    proposal_timeout: int | None = Field(default=None, gt=0)
    min_validators: int | None = Field(default=None, ge=0, lt=2**16)
    global_test_set_hash: str | None = Field(default=None, description="sha256 of the global test set G, hex")
    epsilon_cap: float | None = Field(
        default=None, ge=0, description="each member's privacy budget on chain, epsilon (0: no cap)"
    )


class SupervisorIn(_ProposalIn):
    kind: Literal["supervisor"]
    from_: str | None = Field(default=None, alias="from", description="the current supervisor; absent: none yet")
    to: str


ProposalIn = Annotated[AdmitIn | RolesIn | RemoveIn | ParametersIn | SupervisorIn, Field(discriminator="kind")]


class BallotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool


# ---- privacy budgets ----------------------------------------------------------------------------------------


class BudgetOut(BaseModel):
    """A member's privacy budget as the chain counts it: the plain sum of its charges (an upper bound)."""

    name: str
    address: str
    spent: float = Field(description="epsilon spent: the sum of its charges on chain")
    cap: float | None = Field(description="each member's cap, epsilon (None: the coalition keeps none)")
    left: float | None = Field(description="what it may still spend (0 past a lowered cap; None: no cap)")
    spent_units: int = Field(description="the same in millionths, as the contract counts")
    cap_units: int = Field(description="0: no cap")
    left_units: int | None


class ChargeOut(BaseModel):
    model_id: int
    state: str = Field(description="the candidate's state: a charge stays whatever became of it")
    charge: float = Field(description="epsilon charged when it was submitted")
    charge_units: int
    spent_units: int = Field(description="the member's spending after this charge, millionths")
    cap_units: int = Field(description="the cap in force then (0: none)")
    block: int


class PrivacyOut(BaseModel):
    site: str = Field(description="this hospital's chain account")
    cap: float | None = Field(description="each member's cap in force, epsilon (None: none)")
    members: list[BudgetOut] = Field(description="every member's budget")
    charges: list[ChargeOut] = Field(description="this hospital's own charges, oldest first")


class ExportIn(BaseModel):
    """A committed model to export with this hospital's fingerprint."""

    model_config = ConfigDict(extra="forbid")
    model_id: int = Field(ge=0, description="the committed model's id on chain")


class ScoreOut(BaseModel):
    data: str = Field(description="L (this hospital's local test set) or G (the global test set)")
    samples: int
    committed: float = Field(description="the committed model's headline score")
    exported: float = Field(description="the fingerprinted copy's")


class ExportOut(BaseModel):
    """One of this hospital's exports as recorded on chain (and, where this site wrote its file, its scores)."""

    export_id: int
    model_id: int
    member: str = Field(description="the exporting hospital's account, which signed the record")
    fingerprint: str = Field(description="sha256 of the fingerprint key: the commitment on chain")
    key_blob: str = Field(description="vault hash of the fingerprint key, sealed for the tracers")
    block: int
    model_hash: str | None = None
    tx_hash: str | None = None
    scores: list[ScoreOut] = Field(default_factory=list)
    file: bool = Field(description="whether this site holds the file (GET /exports/{id}/model)")


class RankIn(BaseModel):
    """Which images of this site's unlabelled folder an expert should annotate first (docs/active.md)."""

    model_config = ConfigDict(extra="forbid")
    budget: int | str = Field(description="how many to choose: a count, or a share of the folder such as '10%'")
    committee: int = Field(default=3, ge=2, description="committee size K: the last K hospitals' committed models")
    method: Method = Method.COMMITTEE
    measure: Measure = DEFAULT_MEASURE
    unlabelled: str | None = Field(default=None, description="a sub-folder of the site's unlabelled folder")
    seed: int = Field(default=0, description="the random method's seed")
    diversity: float = Field(
        default=0.3, ge=0, allow_inf_nan=False, description="weight against near-duplicates (0: none)"
    )
    density: float = Field(
        default=DEFAULT_DENSITY,
        ge=0,
        allow_inf_nan=False,
        description="exponent of the information density weight: typical images before outliers (0: none)",
    )


class CommitteeModelOut(BaseModel):
    model_id: int
    proposer: str
    model_hash: str


class RankedOut(BaseModel):
    rank: int
    name: str
    sha256: str
    score: float
    chosen: bool
    thumbnail: str = Field(description="the thumbnail's URL path (GET, operator only)")


class RankingOut(BaseModel):
    """A ranking this site wrote under its `rankings` folder."""

    ranking_id: str
    method: Method
    measure: Measure | None
    budget: int
    diversity: float
    density: float
    seed: int
    committee: list[CommitteeModelOut]
    ranked: list[RankedOut]
