"""The self-governance half of the in-memory ledger: proposals, ballots and their execution.

Mirrors Coalition.sol's `propose`, `ballot` and `execute`: an active member proposes (its approval counts), the
members active when it was made (`memberSince` <= its id) ballot once each, anyone executes it once two thirds
of them approve before its deadline; more than a third rejecting rejects it. Execution re-checks the coalition
as it is then, including the validator floor, and a refused execution changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tclearn.ledger.governance import (
    Action,
    Admit,
    BallotCast,
    Proposal,
    ProposalState,
    Remove,
    RotateSupervisor,
    SetParameters,
    SetRoles,
    effective_state,
)
from tclearn.ledger.ledger import ZERO_ADDRESS, TxResult, checked_address
from tclearn.ledger.memory.blocks import MemoryChain, transaction
from tclearn.ledger.memory.members import MemberRegistry
from tclearn.ledger.reverts import refusal
from tclearn.protocol import approvals_needed, is_committed, is_rejected
from tclearn.types import Role


@dataclass
class _Proposal:
    action: Action
    state: ProposalState
    proposer: str
    eligible: int
    deadline: int
    approvals: int = 1
    rejections: int = 0
    balloted: set[str] = field(default_factory=set)  # the contract's ballot bits


class Governed(MemberRegistry):
    """The members, changed only by proposals carried by two thirds of the active members."""

    def __init__(self, chain: MemoryChain, deployer: LocalAccount, seed: bytes) -> None:
        super().__init__(chain, deployer, seed)
        self._proposals: list[_Proposal] = []
        self._ballots: dict[int, list[BallotCast]] = {}  # read from the mined Ballot events, as the client does

    def proposal_count(self) -> int:
        return len(self._proposals)

    def _mine(self) -> TxResult:
        tx = super()._mine()
        for e in tx.events:
            if e.name == "Ballot":
                cast = BallotCast(e.args["member"], e.args["approve"], e.block_number)
                self._ballots.setdefault(e.args["proposal"], []).append(cast)
        return tx

    def _check_action(self, action: Action, what: str) -> None:
        """What the contract checks of an action when it is proposed."""
        if isinstance(action, Admit):
            self._check_admit_proposal(action, what)
        elif isinstance(action, SetRoles):
            self._check_roles(int(action.roles), what)
            self._active_member(action.account, what)
        elif isinstance(action, Remove):
            self._active_member(action.account, what)
        elif isinstance(action, SetParameters):
            self._check_parameters(action.parameters, what)
        else:
            self._check_rotation(action, what)
            self._active_member(action.to, what)

    def _check_admit_proposal(self, action: Admit, what: str) -> None:
        if action.account == ZERO_ADDRESS:
            raise self._refuse(what, "ZeroAddress")
        self._check_roles(int(action.roles), what)
        m = self._members.get(action.account)
        if m is not None and m.active:
            raise self._refuse(what, "AlreadyMember", account=action.account)

    def _roles_of(self, account: str) -> int:
        m = self._members.get(account)
        return 0 if m is None else m.roles

    @transaction
    def propose(self, member: LocalAccount, action: Action) -> Proposal:
        what, proposer = action.describe(), member.address
        self._active_member(proposer, what)
        self._check_action(action, what)
        pid = len(self._proposals)
        deadline = self.chain.timestamp() + self.parameters().proposal_timeout
        p = _Proposal(action, ProposalState.PENDING, proposer, self._active_members, deadline, balloted={proposer})
        self._proposals.append(p)
        self._emit(
            "Proposed",
            proposal=pid,
            proposer=proposer,
            kind=int(action.kind),
            action=action.encode(),
            eligible=p.eligible,
            deadline=deadline,
        )
        self._emit("Ballot", proposal=pid, member=proposer, approve=True)
        self._mine()
        return self.proposal(pid)

    def _pending_proposal(self, pid: int, what: str) -> _Proposal:
        if not 0 <= pid < len(self._proposals):
            raise self._refuse(what, "UnknownProposal", proposal=pid)
        p = self._proposals[pid]
        if p.state is not ProposalState.PENDING:
            raise self._refuse(what, "ProposalNotPending", proposal=pid, state=p.state.name.lower())
        if self.chain.timestamp() > p.deadline:
            raise self._refuse(what, "ProposalExpired", proposal=pid, deadline=p.deadline)
        return p

    @transaction
    def ballot(self, member: LocalAccount, proposal_id: int, approve: bool) -> TxResult:
        what = f"{'approve' if approve else 'reject'} proposal {proposal_id}"
        p, voter = self._pending_proposal(proposal_id, what), member.address
        m = self._members.get(voter)
        if m is None or not m.active or m.member_since > proposal_id:
            raise self._refuse(what, "NotBallotEligible", member=voter, proposal=proposal_id)
        if voter in p.balloted:
            raise self._refuse(what, "AlreadyBalloted", member=voter, proposal=proposal_id)
        p.balloted.add(voter)
        self._emit("Ballot", proposal=proposal_id, member=voter, approve=approve)
        if approve:
            p.approvals += 1
        else:
            p.rejections += 1
            if is_rejected(p.rejections, p.eligible):
                p.state = ProposalState.REJECTED
                self._emit("ProposalRejected", proposal=proposal_id)
        return self._mine()

    @transaction
    def execute(self, caller: LocalAccount, proposal_id: int) -> TxResult:
        what = f"execute proposal {proposal_id}"
        p = self._pending_proposal(proposal_id, what)
        if not is_committed(p.approvals, p.eligible):
            needed = approvals_needed(p.eligible)
            raise self._refuse(what, "ProposalNotApproved", proposal=proposal_id, approvals=p.approvals, needed=needed)
        action = p.action
        self._check_execution(action, what)
        self._check_validators(*self._validators_after(action), what)
        if self._active_members_after(action) == 0:
            raise self._refuse(what, "NoMembersLeft")
        p.state = ProposalState.EXECUTED
        self._apply(action, what)
        self._emit("ProposalExecuted", proposal=proposal_id, kind=int(action.kind))
        return self._mine()

    def _check_execution(self, action: Action, what: str) -> None:
        """The checks the contract makes while executing `action`, made before anything changes."""
        if isinstance(action, Admit):
            self._check_admit(action.account, int(action.roles), what)
        elif isinstance(action, SetRoles | Remove):
            self._active_member(action.account, what)
        elif isinstance(action, SetParameters):
            self._check_parameters(action.parameters, what)
        elif isinstance(action, RotateSupervisor):
            self._check_rotation(action, what)
            self._active_member(action.to, what)

    def _check_rotation(self, action: RotateSupervisor, what: str) -> None:
        if action.from_ == action.to:  # to its own holder: nothing to hand on
            raise self._refuse(what, "InvalidAction", kind=int(action.kind))
        if action.from_ != ZERO_ADDRESS and not self._is_supervisor(action.from_):
            raise self._refuse(what, "NotSupervisor", account=action.from_)

    def _is_supervisor(self, account: str) -> bool:
        m = self._members.get(account)
        return m is not None and m.active and bool(m.roles & Role.SUPERVISOR)

    def _validators_after(self, action: Action) -> tuple[int, int]:
        """The active validators once `action` is applied, and the floor then (the contract's `_checkValidators`)."""
        count, floor = len(self._validators), self.parameters().min_validators
        if isinstance(action, Admit):
            count += bool(action.roles & Role.VALIDATOR)
        elif isinstance(action, SetRoles):
            count += bool(action.roles & Role.VALIDATOR) - bool(self._roles_of(action.account) & Role.VALIDATOR)
        elif isinstance(action, Remove):
            count -= bool(self._roles_of(action.account) & Role.VALIDATOR)
        elif isinstance(action, SetParameters):
            floor = action.parameters.min_validators
        return count, floor  # a supervisor rotation never changes the validator role

    def _active_members_after(self, action: Action) -> int:
        count = self._active_members
        if isinstance(action, Admit):
            return count + 1
        if isinstance(action, Remove):
            return count - 1
        if isinstance(action, RotateSupervisor) and action.from_ != ZERO_ADDRESS:
            return count - (self._roles_of(action.from_) == Role.SUPERVISOR)  # a supervisor-only member leaves
        return count

    def _apply(self, action: Action, what: str) -> None:
        if isinstance(action, Admit):
            self._admit(action.account, int(action.roles), action.encryption_key, action.name, what)
        elif isinstance(action, SetRoles):
            self._apply_roles(action.account, self._members[action.account], int(action.roles))
            self._emit("RolesChanged", account=action.account, roles=int(action.roles), active=True)
        elif isinstance(action, Remove):
            self._deactivate(action.account, self._members[action.account])
        elif isinstance(action, SetParameters):
            self._set_parameters(action.parameters, what)
        else:
            self._rotate_supervisor(action.from_, action.to)

    def _rotate_supervisor(self, source: str, target: str) -> None:
        """As the contract: a supervisor left with no other role is no longer a member."""
        if source != ZERO_ADDRESS:
            f = self._members[source]
            left = f.roles & ~int(Role.SUPERVISOR)
            if left == 0:
                self._deactivate(source, f)
            else:
                self._apply_roles(source, f, left)
                self._emit("RolesChanged", account=source, roles=left, active=True)
        t = self._members[target]
        roles = t.roles | int(Role.SUPERVISOR)
        self._apply_roles(target, t, roles)
        self._emit("RolesChanged", account=target, roles=roles, active=True)
        self._emit("SupervisorRotated", **{"from": source, "to": target})

    # ---- views ----------------------------------------------------------------------------------------

    def proposal(self, proposal_id: int) -> Proposal:
        """One proposal: its tally and state (EXPIRED when pending past its deadline), its action and ballots."""
        if not 0 <= proposal_id < len(self._proposals):
            raise refusal("getProposal", "UnknownProposal", {"proposal": proposal_id})
        p = self._proposals[proposal_id]
        return Proposal(
            id=proposal_id,
            action=p.action,
            action_hash=keccak(p.action.encode()),
            state=effective_state(int(p.state), p.deadline, self.chain.timestamp()),
            proposer=p.proposer,
            eligible=p.eligible,
            approvals=p.approvals,
            rejections=p.rejections,
            deadline=p.deadline,
            ballots=tuple(self._ballots.get(proposal_id, ())),
        )

    def proposals(self) -> list[Proposal]:
        with self._lock:
            return [self.proposal(i) for i in range(len(self._proposals))]

    def has_ballot(self, proposal_id: int, member: str) -> bool:
        p = self._proposals[proposal_id] if 0 <= proposal_id < len(self._proposals) else None
        return p is not None and checked_address(member) in p.balloted
