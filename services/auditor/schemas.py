"""The auditor API's response bodies (they make its OpenAPI document, which the fuzz test reads)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.member.schemas import BudgetOut


class Health(BaseModel):
    ok: bool
    coalition: str = Field(description="the coalition's label (or its contract address)")
    chain_id: int
    contract: str
    read_to_block: int = Field(description="the last block the auditor has read events from")
    models: int
    head: int
    access_log: bool = Field(description="whether this auditor can show the vault's access log")


class Member(BaseModel):
    address: str
    name: str
    roles: list[str]
    active: bool


class StratumRow(BaseModel):
    set: str = Field(description="G or the validator's L")
    name: str = Field(description="e.g. finding:small, class:benign, label:liver")
    samples: int
    candidate: float | None
    head: float | None
    tolerance: float
    judged: bool = Field(description="both measured it on the same samples, at least the policy's min_stratum")
    ok: bool
    outcome: str = Field(description="ok, fails, or not judged")


class Vote(BaseModel):
    validator: str
    approve: bool
    score_global: float
    score_local: float
    evidence_hash: str | None
    block: int
    reason: str | None = Field(None, description="the validator's reason, from its evidence (None: unreadable)")
    strata: list[StratumRow] = Field(default_factory=list, description="every stratum of G and L it compared")


class BlobCheck(BaseModel):
    model_id: int
    what: str = Field(description="model blob, metadata, general's report, or a vote's evidence")
    sha256: str
    status: str
    ok: bool
    severity: str | None
    checked_at: float | None


class ModelView(BaseModel):
    id: int
    parent_id: int
    state: str = Field(description="submitted, open, committed, rejected, expired or stale")
    proposer: str
    generals: list[str]
    general: str
    model_hash: str | None
    metadata_hash: str | None
    uri: str
    eligible: int
    approvals: int
    rejections: int
    report_hash: str | None
    reject_reason: str | None
    submitted_block: int
    mean_score_global: float | None
    names: dict[str, str] = Field(description="address -> registered member name")


class ModelDetail(ModelView):
    votes: list[Vote]
    children: list[int]
    blobs: list[BlobCheck]


class Lineage(BaseModel):
    coalition: str
    head: int
    lineage: list[int] = Field(description="the committed chain from genesis to the head")
    committed: list[int]
    members: list[Member]
    models: list[ModelView]


class Integrity(BaseModel):
    ok: bool
    checked: int
    bad: list[BlobCheck]
    blobs: list[BlobCheck]


class AccessEntry(BaseModel):
    at: float
    account: str
    action: str = Field(description="put, get, get-keyring or add-wraps")
    sha256: str
    size: int


class ScorePoint(BaseModel):
    id: int
    state: str
    committed: bool
    block: int
    mean: float | None
    min: float
    max: float


class PrivacyIncrement(BaseModel):
    model_id: int
    state: str
    charged: float = Field(description="epsilon charged on chain when it was submitted (0: not charged)")
    charged_units: int = Field(description="the same in millionths")
    block: int
    metadata: bool = Field(description="whether its metadata could be read from the vault")
    declared: float | None = Field(description="the epsilon its metadata declares (None: no DP mechanism, or unread)")
    recomputed: float | None = Field(description="what its declared mechanism spends, recomputed by the auditor")


class PrivacyComposition(BaseModel):
    epsilon: float | None = Field(description="the accountant's composition of every increment (None: see reason)")
    delta: float | None
    accountant: str | None
    reason: str | None = Field(description="why there is no composition: unreadable metadata, mixed deltas, ...")


class MemberSpending(BudgetOut):
    increments: list[PrivacyIncrement]
    composition: PrivacyComposition


class FindingOut(BaseModel):
    severity: str = Field(description="error (the chain under-counts), warning or info")
    model_id: int
    what: str


class PrivacyAudit(BaseModel):
    ok: bool = Field(description="no finding is an error")
    cap: float | None = Field(description="each member's cap in force, epsilon (None: none)")
    members: list[MemberSpending]
    findings: list[FindingOut]
