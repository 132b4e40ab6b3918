"""Hypothesis drives random sequences of rounds (submit, open, vote, decide with signed votes, reassign, expire),
governance (propose, ballot, execute admissions, removals, role and parameter changes) and time against a ledger,
and checks every outcome (success or the named error) and the whole state after every step against a small
pure-Python model of the protocol. It runs against the contract on the embedded chain and the in-memory ledger."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tclearn.errors import ContractRevert
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import (
    Action,
    Admit,
    Parameters,
    ProposalState,
    Remove,
    SetParameters,
    SetRoles,
)
from tclearn.ledger.ledger import Ledger
from tclearn.ledger.memory import InMemoryLedger, MemoryChain
from tclearn.ledger.votes import SignedVote, sign_vote
from tclearn.protocol import is_committed, is_rejected
from tclearn.types import ModelState as S
from tclearn.types import Role, Variant

VALIDATORS = 5  # founders[0..4] validate; founders[5] is a member only
FOUNDERS = 6
OUTSIDERS = 3  # funded accounts that governance may admit
TIMEOUT = 600  # every deadline (general, voting, proposal) passes at the next jump in time
VALIDATING = Role.MEMBER | Role.VALIDATOR
QUIET = "quiet"  # not an error: the call succeeds and does nothing
ROLES = st.sampled_from([Role.MEMBER, Role.VALIDATOR, VALIDATING, Role.MEMBER | Role.AUDITOR])
CHARGES = st.sampled_from([0, 0, 500_000, 1_250_000, 2_000_000])  # epsilon in millionths
CAPS = st.sampled_from([0, 1_000_000, 3_000_000, 6_000_000])


@dataclass
class Candidate:
    model_hash: bytes
    parent: int
    proposer: str
    general: str
    eligible: int
    state: S = S.SUBMITTED
    approvals: int = 0
    rejections: int = 0
    voters: set[str] = field(default_factory=set)  # direct votes only: signed ones leave no trace
    deadline_epoch: int = 0  # the time epoch in which the current deadline was set


@dataclass
class MemberModel:
    roles: int
    active: bool
    member_since: int
    validator_since: int
    spent: int = 0  # privacy charged, epsilon in millionths


@dataclass
class ProposalModel:
    action: Action
    proposer: str
    eligible: int
    deadline_epoch: int
    state: ProposalState = ProposalState.PENDING
    approvals: int = 1
    rejections: int = 0
    balloted: set[str] = field(default_factory=set)


class ProtocolModel(RuleBasedStateMachine):
    backend = "contract"

    @initialize()
    def deploy(self) -> None:
        self.parameters = Parameters(
            os.urandom(32),
            general_timeout=TIMEOUT,
            voting_timeout=TIMEOUT,
            proposal_timeout=TIMEOUT,
            epsilon_cap=3_000_000,
        )
        settings: dict[str, Any] = {
            "variant": Variant.B,
            "genesis_hash": os.urandom(32),
            "genesis_uri": "vault://genesis",
            "parameters": self.parameters,
            "founders": [
                Admit(a.address, VALIDATING if i < VALIDATORS else Role.MEMBER, os.urandom(32), f"hospital-{i}")
                for i, a in enumerate(dev_accounts(1 + FOUNDERS)[1:])
            ],
        }
        self.ledger: Ledger
        if self.backend == "contract":
            chain = embedded_chain(2 + FOUNDERS + OUTSIDERS)
            self.ledger, _ = LedgerClient.deploy(chain, chain.dev_keys[0], **settings)
            keys, self.advance = chain.dev_keys, chain.advance_time
        else:
            memory = MemoryChain()
            keys, self.advance = dev_accounts(2 + FOUNDERS + OUTSIDERS), memory.advance_time
            self.ledger, _ = InMemoryLedger.deploy(memory, keys[0], **settings)
        self.keeper: LocalAccount = keys[-1]  # never a member
        self.accounts: list[LocalAccount] = keys[1 : 1 + FOUNDERS + OUTSIDERS]
        self.head = 0
        self.epoch = 0  # advanced by every jump in time longer than every timeout
        self.candidates: dict[int, Candidate] = {}
        self.proposals: list[ProposalModel] = []
        self.members = {
            a.address: MemberModel(int(VALIDATING if i < VALIDATORS else Role.MEMBER), True, 0, 1)
            for i, a in enumerate(self.accounts[:FOUNDERS])
        }

    # ---- model helpers -------------------------------------------------------------------------------

    def _active(self, address: str) -> bool:
        m = self.members.get(address)
        return m is not None and m.active

    def _roles(self, address: str) -> int:
        m = self.members.get(address)
        return 0 if m is None else m.roles

    def _validators(self) -> set[str]:
        return {a for a, m in self.members.items() if m.active and m.roles & Role.VALIDATOR}

    def _model_count(self) -> int:
        return 1 + len(self.candidates)

    def _touch(self, cid: int) -> str | None:
        """The contract's stale marking: "Stale" if touching `cid` makes it stale (the call is refused as `Stale`
        after marking it), QUIET if it already is (the call does nothing), None otherwise."""
        c = self.candidates[cid]
        if c.state == S.STALE:
            return QUIET
        if c.state in (S.SUBMITTED, S.OPEN) and c.parent != self.head:
            c.state = S.STALE
            return "Stale"
        return None

    def _expect(self, error: str | None, action: Any) -> Any:
        if error is None:
            return action()
        if error == QUIET:
            result = action()
            assert not getattr(result, "tx", result).events, "a call on a stale candidate does nothing"
            return None
        try:
            action()
        except ContractRevert as exc:
            assert exc.error == error, f"expected {error}, got {exc}"
            return None
        raise AssertionError(f"expected the ledger to refuse with {error}")

    def _pick(self, data: st.DataObject) -> int | None:
        if not self.candidates:
            return None
        return data.draw(st.sampled_from(sorted(self.candidates)))

    def _conclude(self, cid: int, c: Candidate, approvals: int, rejections: int) -> bool:
        c.approvals, c.rejections = approvals, rejections
        if is_committed(approvals, c.eligible):
            c.state, self.head = S.COMMITTED, cid
        elif is_rejected(rejections, c.eligible):
            c.state = S.REJECTED
        return c.state != S.OPEN

    def _voter_error(self, cid: int, c: Candidate, voter: str) -> str | None:
        """Why `voter` may not vote on `cid`, as the contract checks it."""
        m = self.members.get(voter)
        if voter not in self._validators():
            return "NotValidator"
        if voter == c.proposer:
            return "ProposerCannotVote"
        if m is not None and m.validator_since > cid:
            return "NotEligible"
        if voter in c.voters:
            return "AlreadyVoted"
        return None

    # ---- the round -----------------------------------------------------------------------------------

    @rule(who=st.integers(0, FOUNDERS + OUTSIDERS - 1), stale_parent=st.booleans(), charge=CHARGES)
    def submit(self, who: int, stale_parent: bool, charge: int) -> None:
        self._submit(self.accounts[who], stale_parent, charge)

    def _submit(self, proposer: LocalAccount, stale_parent: bool = False, charge: int = 0) -> int | None:
        """Submits a new model by `proposer`, charging `charge`; its id, or None if the ledger refused it (as the
        model expects)."""
        parent = self.head + 1 + len(self.candidates) if stale_parent else self.head
        model_hash = os.urandom(32)
        call = lambda: self.ledger.submit(proposer, parent, model_hash, "u", os.urandom(32), charge)  # noqa: E731
        eligible = len(self._validators() - {proposer.address})
        if not self._active(proposer.address) or not self._roles(proposer.address) & Role.MEMBER:
            return self._expect("NotMember", call)
        if parent != self.head:
            return self._expect("StaleParent", call)
        if eligible == 0:
            return self._expect("NoValidators", call)
        member = self.members[proposer.address]
        if charge and member.spent + charge > (self.parameters.epsilon_cap or 2**64 - 1):
            return self._expect("OverBudget", call)
        s = call()
        member.spent += charge
        assert self.ledger.privacy_spent(proposer.address) == member.spent
        assert (s.model_id, s.eligible) == (self._model_count(), eligible)
        assert s.general in self._validators() and s.general != proposer.address
        self.candidates[s.model_id] = Candidate(
            model_hash, parent, proposer.address, s.general, s.eligible, deadline_epoch=self.epoch
        )
        return int(s.model_id)

    @rule(data=st.data(), ok=st.booleans(), who=st.integers(0, FOUNDERS + OUTSIDERS - 1), as_general=st.booleans())
    def open(self, data: st.DataObject, ok: bool, who: int, as_general: bool) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        self._open(cid, self._account(c.general) if as_general else self.accounts[who], ok)

    def _account(self, address: str) -> LocalAccount:
        return next(a for a in self.accounts if a.address == address)

    def _open(self, cid: int, caller: LocalAccount, ok: bool) -> None:
        c = self.candidates[cid]
        call = lambda: self.ledger.open_candidate(caller, cid, ok, os.urandom(32))  # noqa: E731
        if stale := self._touch(cid):
            self._expect(stale, call)
        elif c.state != S.SUBMITTED:
            self._expect("WrongState", call)
        elif caller.address != c.general or not self._active(caller.address):
            self._expect("NotGeneral", call)
        elif self.epoch > c.deadline_epoch:
            self._expect("DeadlinePassed", call)
        else:
            call()
            c.state, c.deadline_epoch = (S.OPEN if ok else S.REJECTED), self.epoch

    def _round_error(self, cid: int, c: Candidate) -> str | None:
        """Why no vote may be cast on `cid` now (marking it stale if it is)."""
        if stale := self._touch(cid):
            return stale
        if c.state != S.OPEN:
            return "WrongState"
        if self.epoch > c.deadline_epoch:
            return "DeadlinePassed"
        return None

    @rule(data=st.data(), who=st.integers(0, FOUNDERS + OUTSIDERS - 1), approve=st.booleans())
    def vote(self, data: st.DataObject, who: int, approve: bool) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c, voter = self.candidates[cid], self.accounts[who]
        call = lambda: self.ledger.vote(voter, cid, approve, 0.5, 0.5, os.urandom(32))  # noqa: E731
        error = self._round_error(cid, c) or self._voter_error(cid, c, voter.address)
        self._expect(error, call)
        if error is None:
            c.voters.add(voter.address)
            self._conclude(cid, c, c.approvals + approve, c.rejections + (not approve))

    @rule(data=st.data(), honest=st.booleans(), unanimous=st.booleans(), duplicate=st.booleans())
    def decide(self, data: st.DataObject, honest: bool, unanimous: bool, duplicate: bool) -> None:
        """Signed votes carried in one transaction: by validators of the candidate (`honest`) or any accounts,
        all the same way (`unanimous`) or not, with a duplicate of the first if asked."""
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        fit = (None, "AlreadyVoted")  # honest signers may have voted directly already
        pool = [a for a in self.accounts if not honest or self._voter_error(cid, c, a.address) in fit]
        chosen = data.draw(st.lists(st.sampled_from(pool), unique=True, max_size=6)) if pool else []
        same = data.draw(st.booleans())
        approves = [same if unanimous else data.draw(st.booleans()) for _ in chosen]
        votes = self._signed(cid, zip(chosen, approves, strict=True))
        self._decide(cid, votes, duplicate)

    def _decide(self, cid: int, votes: list[SignedVote], duplicate: bool = False) -> None:
        c = self.candidates[cid]
        if duplicate and votes:
            votes.insert(1, votes[0])
        call = lambda: self.ledger.decide(self.keeper, cid, votes)  # noqa: E731
        error = self._round_error(cid, c)
        approvals, rejections, seen = c.approvals, c.rejections, set()
        for vote in votes if error is None else []:
            error = "AlreadyVoted" if vote.signer in seen else self._voter_error(cid, c, vote.signer)
            if error is not None:
                break
            seen.add(vote.signer)
            approvals, rejections = approvals + vote.approve, rejections + (not vote.approve)
        if error is None and not (is_committed(approvals, c.eligible) or is_rejected(rejections, c.eligible)):
            error = "NoDecision"
        self._expect(error, call)
        if error is None:
            self._conclude(cid, c, approvals, rejections)

    @rule(data=st.data())
    def reassign(self, data: st.DataObject) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        call = lambda: self.ledger.reassign_general(self.keeper, cid)  # noqa: E731
        others = {v for v in self._validators() - {c.general, c.proposer} if self.members[v].validator_since <= cid}
        if stale := self._touch(cid):
            self._expect(stale, call)
        elif c.state != S.SUBMITTED:
            self._expect("WrongState", call)
        elif self.epoch <= c.deadline_epoch:
            self._expect("DeadlineNotReached", call)
        elif not others:
            self._expect("NoOtherGeneral", call)
        else:
            call()
            general = self.ledger.get_model(cid, with_uri=False).general
            assert general in others
            c.general, c.deadline_epoch = general, self.epoch

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        call = lambda: self.ledger.expire(self.keeper, cid)  # noqa: E731
        if stale := self._touch(cid):
            self._expect(stale, call)
        elif c.state not in (S.SUBMITTED, S.OPEN):
            self._expect("WrongState", call)
        elif self.epoch <= c.deadline_epoch:
            self._expect("DeadlineNotReached", call)
        else:
            call()
            c.state = S.EXPIRED

    # ---- governance ----------------------------------------------------------------------------------

    @rule(
        who=st.integers(0, FOUNDERS + OUTSIDERS - 1),
        kind=st.sampled_from(["admit", "remove", "roles", "parameters"]),
        whom=st.integers(0, FOUNDERS + OUTSIDERS - 1),
        roles=ROLES,
        floor=st.integers(1, VALIDATORS + 1),
        cap=CAPS,
        carried=st.booleans(),
    )
    def propose(self, who: int, kind: str, whom: int, roles: Role, floor: int, cap: int, carried: bool) -> None:
        """A proposal, and if `carried` every member that may approving it and its execution."""
        proposer, account = self.accounts[who].address, self.accounts[whom].address
        action: Action
        if kind == "admit":
            action = Admit(account, roles, os.urandom(32), f"account-{whom}")
        elif kind == "remove":
            action = Remove(account)
        elif kind == "roles":
            action = SetRoles(account, roles)
        else:
            changed = self.parameters.replace(policy_hash=os.urandom(32), min_validators=floor, epsilon_cap=cap)
            action = SetParameters(changed)
        call = lambda: self.ledger.propose(self.accounts[who], action)  # noqa: E731
        if not self._active(proposer):
            self._expect("NotMember", call)
        elif kind == "admit" and self._active(account):
            self._expect("AlreadyMember", call)
        elif kind in ("remove", "roles") and not self._active(account):
            self._expect("NotMember", call)
        else:
            eligible = sum(m.active for m in self.members.values())
            proposal = call()
            assert (proposal.id, proposal.eligible, proposal.action) == (len(self.proposals), eligible, action)
            self.proposals.append(ProposalModel(action, proposer, eligible, self.epoch, balloted={proposer}))
            if carried:
                self._carry(proposal.id, True)

    def _pick_proposal(self, data: st.DataObject) -> int | None:
        return data.draw(st.integers(0, len(self.proposals))) if self.proposals else None  # one past: unknown

    def _proposal_error(self, pid: int) -> str | None:
        if pid >= len(self.proposals):
            return "UnknownProposal"
        p = self.proposals[pid]
        if p.state is not ProposalState.PENDING:
            return "ProposalNotPending"
        if self.epoch > p.deadline_epoch:
            return "ProposalExpired"
        return None

    @rule(data=st.data(), who=st.integers(0, FOUNDERS + OUTSIDERS - 1), approve=st.booleans())
    def ballot(self, data: st.DataObject, who: int, approve: bool) -> None:
        pid = self._pick_proposal(data)
        if pid is None:
            return
        self._ballot(pid, self.accounts[who], approve)

    def _ballot(self, pid: int, account: LocalAccount, approve: bool) -> None:
        member = account.address
        error = self._proposal_error(pid)
        if error is None:
            p = self.proposals[pid]
            if not self._active(member) or self.members[member].member_since > pid:
                error = "NotBallotEligible"
            elif member in p.balloted:
                error = "AlreadyBalloted"
        self._expect(error, lambda: self.ledger.ballot(account, pid, approve))
        if error is None:
            p.balloted.add(member)
            if approve:
                p.approvals += 1
            else:
                p.rejections += 1
                if is_rejected(p.rejections, p.eligible):
                    p.state = ProposalState.REJECTED

    @rule(data=st.data())
    def execute(self, data: st.DataObject) -> None:
        pid = self._pick_proposal(data)
        if pid is not None:
            self._execute(pid)

    def _execute(self, pid: int) -> None:
        error = self._proposal_error(pid)
        if error is None:
            p = self.proposals[pid]
            error = self._execution_error(p)
        self._expect(error, lambda: self.ledger.execute(self.keeper, pid))
        if error is None:
            p.state = ProposalState.EXECUTED
            self._apply(p.action)

    def _execution_error(self, p: ProposalModel) -> str | None:
        if not is_committed(p.approvals, p.eligible):
            return "ProposalNotApproved"
        action, validators, floor = p.action, self._validators(), self.parameters.min_validators
        if isinstance(action, Admit):
            if self._active(action.account):
                return "AlreadyMember"
            validators = validators | ({action.account} if action.roles & Role.VALIDATOR else set())
        elif isinstance(action, Remove | SetRoles):
            if not self._active(action.account):
                return "NotMember"
            keeps = isinstance(action, SetRoles) and action.roles & Role.VALIDATOR
            validators = (validators | {action.account}) if keeps else (validators - {action.account})
        elif isinstance(action, SetParameters):
            floor = action.parameters.min_validators
        return "TooFewValidators" if len(validators) < floor else None

    def _apply(self, action: Action) -> None:
        if isinstance(action, SetParameters):
            self.parameters = action.parameters
            return
        assert isinstance(action, Admit | Remove | SetRoles)
        m = self.members.get(action.account)
        roles = 0 if isinstance(action, Remove) else int(action.roles)
        gains = roles & Role.VALIDATOR and not (m is not None and m.active and m.roles & Role.VALIDATOR)
        if isinstance(action, Admit):
            previous, spent = (0, 0) if m is None else (m.validator_since, m.spent)  # spending never decreases
            m = self.members[action.account] = MemberModel(roles, True, len(self.proposals), previous, spent)
        assert m is not None
        m.roles, m.active = roles, not isinstance(action, Remove)
        if gains:
            m.validator_since = self._model_count()

    # ---- whole steps: a round decided by signed votes, a proposal carried -------------------------------

    def _signed(self, cid: int, ballots: Any) -> list[SignedVote]:
        """`(account, approve)` ballots signed for `cid`, in the order the client sends them."""
        c, domain = self.candidates[cid], self.ledger.domain
        votes = [sign_vote(v, domain, cid, c.model_hash, a, 0.5, 0.5, os.urandom(32)) for v, a in ballots]
        return sorted(votes, key=lambda v: int(v.signer, 16))

    @rule(who=st.integers(0, FOUNDERS + OUTSIDERS - 1), approve=st.booleans(), decided=st.booleans())
    def round(self, who: int, approve: bool, decided: bool) -> None:
        """A member submits and the general opens; if `decided`, every eligible validator signs the same way and
        one carries the votes."""
        cid = self._submit(self.accounts[who])
        if cid is None:
            return
        c = self.candidates[cid]
        self._open(cid, self._account(c.general), True)
        if not decided:
            return
        voters = [a for a in self.accounts if self._voter_error(cid, c, a.address) is None]
        self._decide(cid, self._signed(cid, [(v, approve) for v in voters]))

    @rule(data=st.data(), approve=st.booleans())
    def carry(self, data: st.DataObject, approve: bool) -> None:
        """Every member that may ballots on a pending proposal the same way, then anyone executes it."""
        pending = [pid for pid in range(len(self.proposals)) if self._proposal_error(pid) is None]
        if pending:
            self._carry(data.draw(st.sampled_from(pending)), approve)

    def _carry(self, pid: int, approve: bool) -> None:
        for account in self.accounts:
            if self._proposal_error(pid) is None and account.address not in self.proposals[pid].balloted:
                self._ballot(pid, account, approve)
        self._execute(pid)

    @rule()
    def time_passes(self) -> None:
        self.advance(TIMEOUT + 100)
        self.epoch += 1

    # ---- invariants ----------------------------------------------------------------------------------

    @invariant()
    def ledger_matches_model(self) -> None:
        if not hasattr(self, "ledger"):
            return
        ledger = self.ledger
        assert ledger.head() == self.head and ledger.parameters() == self.parameters
        assert ledger.validator_count() == len(self._validators())
        for cid, c in self.candidates.items():
            m = ledger.get_model(cid, with_uri=False)
            assert (m.state, m.approvals, m.rejections, m.general) == (
                c.state,
                c.approvals,
                c.rejections,
                c.general,
            ), cid
        for account in self.accounts:
            record, expected = ledger.get_member(account.address), self.members.get(account.address)
            got = record and (int(record.roles), record.active, record.member_since, record.epsilon_spent)
            want = expected and (expected.roles, expected.active, expected.member_since, expected.spent)
            assert got == want, account.address
            if record is not None and expected is not None and record.roles & Role.VALIDATOR:
                assert record.validator_since == expected.validator_since, account.address
        for pid, p in enumerate(self.proposals):
            got_p = ledger.proposal(pid)
            state = (
                ProposalState.EXPIRED if p.state is ProposalState.PENDING and self.epoch > p.deadline_epoch else p.state
            )
            assert (got_p.state, got_p.approvals, got_p.rejections, got_p.eligible) == (
                state,
                p.approvals,
                p.rejections,
                p.eligible,
            ), pid


class MemoryModel(ProtocolModel):
    backend = "memory"


TestProtocolModel = ProtocolModel.TestCase
TestProtocolModel.settings = settings(
    max_examples=12, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestMemoryModel = MemoryModel.TestCase
TestMemoryModel.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
