"""Rebuilds the coalition's whole history — its founding, members, proposals and ballots, parameters, lineage,
generals, votes, every member's privacy spending, every export of a committed model — from events alone.

A pure fold over decoded events (no chain access), so that an auditor needs nothing but the logs,
and tests can check it against the contract's own views. Events carry no time: a proposal still pending past
its deadline reads as expired only given the chain's time (`ProposalHistory.state_at`, `to_json(now=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tclearn.errors import IntegrityError
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.governance import Action, ActionKind, Parameters, ProposalState, decode_action, effective_state
from tclearn.ledger.ledger import ModelExport as ModelExport  # re-exported: the history's exports
from tclearn.ledger.values import epsilon_of
from tclearn.protocol import approvals_needed, from_fixed
from tclearn.types import ModelState, RejectReason, Role


@dataclass
class MemberHistory:
    address: str
    name: str
    roles: Role
    active: bool
    encryption_key: bytes
    member_since: int = 0  # the first proposal it may ballot on (the proposals made before it was admitted)


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


@dataclass(frozen=True)
class ParametersDeclaration:
    """The coalition's parameters as set at founding or by a proposal, and the first model id they apply to."""

    parameters: Parameters
    from_model: int
    block: int


@dataclass(frozen=True)
class PrivacyCharge:
    """A `PrivacySpent` event: candidate `model_id` charged `charge` to its proposer `member`, whose spending
    then stood at `spent`, under the cap in force (`cap`: 0 none); epsilon in millionths."""

    model_id: int
    member: str
    charge: int
    spent: int
    cap: int
    block: int


@dataclass(frozen=True)
class Founding:
    """The `Founded` event: the genesis, and the coalition this one continues (all zero for a new one)."""

    genesis_hash: bytes
    predecessor_chain_id: int
    predecessor: str
    predecessor_head_id: int
    block: int

    @property
    def migrated(self) -> bool:
        return self.predecessor_chain_id != 0 or int(self.predecessor, 16) != 0


@dataclass(frozen=True)
class BallotRecord:
    member: str
    approve: bool
    block: int


@dataclass
class ProposalHistory:
    """A proposal: its action (None for bytes that do not decode; `action_data` keeps them), its ballots (the
    proposer's approval first) and its stored state; `state_at` adds expiry."""

    id: int
    kind: int
    action: Action | None
    action_data: bytes
    proposer: str
    eligible: int
    deadline: int
    proposed_block: int
    state: ProposalState = ProposalState.PENDING
    ballots: list[BallotRecord] = field(default_factory=list)
    closed_block: int | None = None  # where it was executed or rejected

    @property
    def approvals(self) -> int:
        return sum(b.approve for b in self.ballots)

    @property
    def rejections(self) -> int:
        return sum(not b.approve for b in self.ballots)

    @property
    def needed(self) -> int:
        return approvals_needed(self.eligible)

    def state_at(self, now: int) -> ProposalState:
        """The state at chain time `now`: EXPIRED for one still pending past its deadline."""
        return effective_state(int(self.state), self.deadline, now)


@dataclass
class LedgerHistory:
    head: int = 0
    founding: Founding | None = None
    global_test_set_hash: bytes = b""
    policies: list[PolicyDeclaration] = field(default_factory=list)  # every declaration, the current one last
    parameters: list[ParametersDeclaration] = field(default_factory=list)  # at founding, then every change
    supervisor: str | None = None  # the last account the supervisor role was rotated to
    members: dict[str, MemberHistory] = field(default_factory=dict)
    proposals: dict[int, ProposalHistory] = field(default_factory=dict)
    candidates: dict[int, CandidateHistory] = field(default_factory=dict)
    charges: list[PrivacyCharge] = field(default_factory=list)  # every privacy charge, in chain order
    exports: list[ModelExport] = field(default_factory=list)  # every export recorded, in id (and chain) order

    @property
    def epsilon_cap(self) -> int:
        """Each member's privacy cap in force, epsilon in millionths (0: none)."""
        return self.parameters[-1].parameters.epsilon_cap if self.parameters else 0

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
    if ev.name in _GOVERNANCE:
        _apply_governance(h, ev)
    elif ev.name == "Founded":
        h.founding = Founding(
            a["genesisHash"], a["predecessorChainId"], a["predecessor"], a["predecessorHeadId"], ev.block_number
        )
    elif ev.name == "GlobalTestSetChanged":
        h.global_test_set_hash = a["hash"]
    elif ev.name == "PolicyChanged":
        if a["hash"] != h.policy_hash:  # a change of the other parameters re-emits the policy in force
            h.policies.append(PolicyDeclaration(a["hash"], len(h.candidates), ev.block_number))
    elif ev.name == "ParametersChanged":  # emitted after the policy and the test set it goes with
        parameters = Parameters(
            h.policy_hash,
            h.global_test_set_hash,
            a["generalTimeout"],
            a["votingTimeout"],
            a["proposalTimeout"],
            a["minValidators"],
            a["epsilonCap"],
        )
        h.parameters.append(ParametersDeclaration(parameters, len(h.candidates), ev.block_number))
    elif ev.name == "MemberRegistered":
        h.members[a["account"]] = MemberHistory(
            a["account"], a["name"], Role(a["roles"]), True, a["encryptionKey"], len(h.proposals)
        )
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
    elif ev.name == "PrivacySpent":
        h.charges.append(PrivacyCharge(a["id"], a["member"], a["charge"], a["spent"], h.epsilon_cap, ev.block_number))
    elif ev.name == "Exported":
        h.exports.append(
            ModelExport(a["exportId"], a["modelId"], a["member"], a["fingerprint"], a["keyBlob"], ev.block_number)
        )


_GOVERNANCE = {"Proposed", "Ballot", "ProposalExecuted", "ProposalRejected", "SupervisorRotated"}


def _apply_governance(h: LedgerHistory, ev: LedgerEvent) -> None:
    a = ev.args
    if ev.name == "Proposed":
        data = bytes(a["action"])
        try:
            action: Action | None = decode_action(a["kind"], data)
        except IntegrityError:  # the contract checked it: bytes we cannot read are kept, not fatal to the history
            action = None
        h.proposals[a["proposal"]] = ProposalHistory(
            a["proposal"], a["kind"], action, data, a["proposer"], a["eligible"], a["deadline"], ev.block_number
        )
    elif ev.name == "Ballot":
        h.proposals[a["proposal"]].ballots.append(BallotRecord(a["member"], a["approve"], ev.block_number))
    elif ev.name == "ProposalExecuted":
        p = h.proposals[a["proposal"]]
        p.state, p.closed_block = ProposalState.EXECUTED, ev.block_number
    elif ev.name == "ProposalRejected":
        p = h.proposals[a["proposal"]]
        p.state, p.closed_block = ProposalState.REJECTED, ev.block_number
    else:  # SupervisorRotated: the roles themselves come with RolesChanged
        h.supervisor = a["to"]


def fold(history: LedgerHistory, events: Iterable[LedgerEvent]) -> LedgerHistory:
    """Applies further events (in chain order, after those already folded) to `history`, in place."""
    for ev in events:
        apply(history, ev)
    return history


def rebuild(events: Iterable[LedgerEvent]) -> LedgerHistory:
    """Folds events (in chain order) into the coalition's history."""
    return fold(LedgerHistory(), events)


def spent_by_member(history: LedgerHistory) -> dict[str, int]:
    """Each member's privacy spending, epsilon in millionths: the plain sum of its charges (an upper bound on
    what its candidates spent together), as the contract counts it; members never charged are absent."""
    spent: dict[str, int] = {}
    for c in history.charges:
        spent[c.member] = spent.get(c.member, 0) + c.charge
    return spent


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


def founding_json(f: Founding | None) -> dict[str, Any] | None:
    if f is None:
        return None
    predecessor = (
        {"chain_id": f.predecessor_chain_id, "coalition": f.predecessor, "head_id": f.predecessor_head_id}
        if f.migrated
        else None
    )
    return {"genesis_hash": hex_or_none(f.genesis_hash), "predecessor": predecessor, "block": f.block}


def parameters_json(d: ParametersDeclaration) -> dict[str, Any]:
    p = d.parameters
    return {
        "policy_hash": hex_or_none(p.policy_hash),
        "global_test_set_hash": hex_or_none(p.global_test_set_hash),
        "general_timeout": p.general_timeout,
        "voting_timeout": p.voting_timeout,
        "proposal_timeout": p.proposal_timeout,
        "min_validators": p.min_validators,
        "epsilon_cap": p.epsilon_cap,
        "from_model": d.from_model,
        "block": d.block,
    }


def action_json(p: ProposalHistory) -> dict[str, Any]:
    try:
        kind = ActionKind(p.kind).name.lower()
    except ValueError:  # the contract refuses other kinds: a log that is not its own
        kind = str(p.kind)
    description = p.action.describe() if p.action is not None else None
    return {"kind": kind, "description": description, "data": "0x" + p.action_data.hex()}


def proposal_json(p: ProposalHistory, now: int | None = None) -> dict[str, Any]:
    """A JSON-ready view of one proposal and its ballots; `now` (chain time) tells a pending one from an
    expired one."""
    state = p.state if now is None else p.state_at(now)
    return {
        "id": p.id,
        "state": state.name.lower(),
        "action": action_json(p),
        "proposer": p.proposer,
        "eligible": p.eligible,
        "needed": p.needed,
        "approvals": p.approvals,
        "rejections": p.rejections,
        "deadline": p.deadline,
        "proposed_block": p.proposed_block,
        "closed_block": p.closed_block,
        "ballots": [{"member": b.member, "approve": b.approve, "block": b.block} for b in p.ballots],
    }


def to_json(h: LedgerHistory, now: int | None = None) -> dict[str, Any]:
    """A JSON-ready view of the history (hashes as 0x-hex); `now` (chain time) marks expired proposals."""
    return {
        "head": h.head,
        "lineage": h.lineage(),
        "founding": founding_json(h.founding),
        "global_test_set_hash": hex_or_none(h.global_test_set_hash),
        "policy_hash": hex_or_none(h.policy_hash),
        "policies": [{"hash": hex_or_none(p.hash), "from_model": p.from_model, "block": p.block} for p in h.policies],
        "parameters": [parameters_json(d) for d in h.parameters],
        "supervisor": h.supervisor,
        "members": [
            {
                "address": m.address,
                "name": m.name,
                "roles": m.roles.names(),
                "active": m.active,
                "encryption_key": hex_or_none(m.encryption_key),
                "member_since": m.member_since,
            }
            for m in h.members.values()
        ],
        "proposals": [proposal_json(p, now) for p in h.proposals.values()],
        "models": [candidate_json(c) for c in h.candidates.values()],
        "privacy": privacy_json(h),
        "exports": [export_json(e) for e in h.exports],
    }


def export_json(e: ModelExport) -> dict[str, Any]:
    return {
        "id": e.id,
        "model_id": e.model_id,
        "member": e.member,
        "fingerprint": hex_or_none(e.fingerprint),
        "key_blob": hex_or_none(e.key_blob),
        "block": e.block,
    }


def privacy_json(h: LedgerHistory) -> dict[str, Any]:
    """Every privacy charge and each member's spending, epsilon in millionths (the plain sum) and as a number."""
    return {
        "epsilon_cap": h.epsilon_cap,
        "spent": {m: {"units": units, "epsilon": epsilon_of(units)} for m, units in spent_by_member(h).items()},
        "charges": [
            {
                "model_id": c.model_id,
                "member": c.member,
                "charge": c.charge,
                "spent": c.spent,
                "cap": c.cap,
                "block": c.block,
            }
            for c in h.charges
        ],
    }
