"""Rebuilds the coalition's whole history — members, lineage, generals, votes — from events alone.

A pure fold over decoded events (no chain access), so that an auditor needs nothing but the logs,
and tests can check it against the contract's own views.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tclearn.ledger.events import LedgerEvent
from tclearn.protocol import from_fixed
from tclearn.types import ModelState, RejectReason, Role


@dataclass
class MemberHistory:
    address: str
    name: str
    roles: Role
    active: bool
    encryption_key: bytes


@dataclass
class VoteRecord:
    validator: str
    approve: bool
    score_global: float
    score_local: float
    evidence_hash: bytes
    block: int


@dataclass
class CandidateHistory:
    id: int
    parent_id: int
    proposer: str
    model_hash: bytes
    metadata_hash: bytes
    uri: str
    eligible: int
    generals: list[str]  # the first draw, then every reassignment
    state: ModelState = ModelState.SUBMITTED
    report_hash: bytes | None = None
    reject_reason: RejectReason | None = None
    votes: list[VoteRecord] = field(default_factory=list)
    submitted_block: int = 0

    @property
    def general(self) -> str:
        return self.generals[-1]

    @property
    def approvals(self) -> int:
        return sum(v.approve for v in self.votes)

    @property
    def rejections(self) -> int:
        return sum(not v.approve for v in self.votes)


@dataclass(frozen=True)
class PolicyDeclaration:
    """An acceptance policy declared on chain: its record's sha256, and the first model id it judges."""

    hash: bytes
    from_model: int
    block: int


@dataclass
class LedgerHistory:
    admin: str = ""
    head: int = 0
    global_test_set_hash: bytes = b""
    policies: list[PolicyDeclaration] = field(default_factory=list)  # every declaration, the current one last
    members: dict[str, MemberHistory] = field(default_factory=dict)
    candidates: dict[int, CandidateHistory] = field(default_factory=dict)

    @property
    def policy_hash(self) -> bytes:
        """The acceptance policy in force (b"" before the deployment is folded)."""
        return self.policies[-1].hash if self.policies else b""

    def name_of(self, address: str) -> str:
        member = self.members.get(address)
        return member.name if member and member.name else address

    def lineage(self) -> list[int]:
        """Committed model ids from genesis to head."""
        chain, current = [], self.head
        while True:
            chain.append(current)
            if current == 0:
                return chain[::-1]
            current = self.candidates[current].parent_id


def apply(h: LedgerHistory, ev: LedgerEvent) -> None:
    """Folds one event into `h` (events must come in chain order); lets a follower update a history in place."""
    a: dict[str, Any] = ev.args
    if ev.name == "AdminTransferred":
        h.admin = a["newAdmin"]
    elif ev.name == "GlobalTestSetChanged":
        h.global_test_set_hash = a["hash"]
    elif ev.name == "PolicyChanged":
        h.policies.append(PolicyDeclaration(a["hash"], len(h.candidates), ev.block_number))
    elif ev.name == "MemberRegistered":
        h.members[a["account"]] = MemberHistory(a["account"], a["name"], Role(a["roles"]), True, a["encryptionKey"])
    elif ev.name == "RolesChanged":
        member = h.members[a["account"]]
        member.roles, member.active = Role(a["roles"]), a["active"]
    elif ev.name == "EncryptionKeyChanged":
        h.members[a["account"]].encryption_key = a["encryptionKey"]
    elif ev.name == "Submitted":
        h.candidates[a["id"]] = CandidateHistory(
            a["id"],
            a["parentId"],
            a["proposer"],
            a["modelHash"],
            a["metadataHash"],
            a["uri"],
            a["eligible"],
            [a["general"]],
            submitted_block=ev.block_number,
        )
    elif ev.name == "GeneralReassigned":
        h.candidates[a["id"]].generals.append(a["general"])
    elif ev.name == "CandidateOpened":
        c = h.candidates[a["id"]]
        c.state, c.report_hash = ModelState.OPEN, a["reportHash"]
    elif ev.name == "Voted":
        h.candidates[a["id"]].votes.append(
            VoteRecord(
                a["validator"],
                a["approve"],
                from_fixed(a["scoreGlobal"]),
                from_fixed(a["scoreLocal"]),
                a["evidenceHash"],
                ev.block_number,
            )
        )
    elif ev.name == "Committed":
        h.candidates[a["id"]].state, h.head = ModelState.COMMITTED, a["id"]
    elif ev.name == "Rejected":
        c = h.candidates[a["id"]]
        c.state, c.reject_reason = ModelState.REJECTED, RejectReason(a["reason"])
        if c.reject_reason == RejectReason.INTEGRITY:
            c.report_hash = a["evidenceHash"]
    elif ev.name == "Expired":
        h.candidates[a["id"]].state = ModelState.EXPIRED
    elif ev.name == "Staled":
        h.candidates[a["id"]].state = ModelState.STALE


def fold(history: LedgerHistory, events: Iterable[LedgerEvent]) -> LedgerHistory:
    """Applies further events (in chain order, after those already folded) to `history`, in place."""
    for ev in events:
        apply(history, ev)
    return history


def rebuild(events: Iterable[LedgerEvent]) -> LedgerHistory:
    """Folds events (in chain order) into the coalition's history."""
    return fold(LedgerHistory(), events)


def hex_or_none(digest: bytes | None) -> str | None:
    """`0x`-hex of an on-chain hash, None kept."""
    return "0x" + digest.hex() if digest is not None else None


def candidate_json(c: CandidateHistory) -> dict[str, Any]:
    """A JSON-ready view of one candidate and its votes (hashes as 0x-hex)."""
    return {
        "id": c.id,
        "parent_id": c.parent_id,
        "state": c.state.name.lower(),
        "proposer": c.proposer,
        "generals": c.generals,
        "model_hash": hex_or_none(c.model_hash),
        "metadata_hash": hex_or_none(c.metadata_hash),
        "uri": c.uri,
        "eligible": c.eligible,
        "approvals": c.approvals,
        "rejections": c.rejections,
        "report_hash": hex_or_none(c.report_hash),
        "reject_reason": c.reject_reason.name.lower() if c.reject_reason else None,
        "submitted_block": c.submitted_block,
        "votes": [
            {
                "validator": v.validator,
                "approve": v.approve,
                "score_global": v.score_global,
                "score_local": v.score_local,
                "evidence_hash": hex_or_none(v.evidence_hash),
                "block": v.block,
            }
            for v in c.votes
        ],
    }


def to_json(h: LedgerHistory) -> dict[str, Any]:
    """A JSON-ready view of the history (hashes as 0x-hex)."""
    return {
        "admin": h.admin,
        "head": h.head,
        "lineage": h.lineage(),
        "global_test_set_hash": hex_or_none(h.global_test_set_hash),
        "policy_hash": hex_or_none(h.policy_hash),
        "policies": [{"hash": hex_or_none(p.hash), "from_model": p.from_model, "block": p.block} for p in h.policies],
        "members": [
            {
                "address": m.address,
                "name": m.name,
                "roles": m.roles.names(),
                "active": m.active,
                "encryption_key": hex_or_none(m.encryption_key),
            }
            for m in h.members.values()
        ],
        "models": [candidate_json(c) for c in h.candidates.values()],
    }
