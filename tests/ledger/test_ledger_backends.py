"""One suite for every `Ledger`: the Coalition contract on the embedded chain and the `InMemoryLedger`.

Every test runs on both backends with the same assertions, refusals included (error name, arguments and
message); that the in-memory ledger passes them is what makes it a faithful stand-in for the contract.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tclearn.errors import ConfigError, ContractRevert
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.governance import (
    Action,
    Admit,
    Parameters,
    ProposalState,
    Remove,
    RotateSupervisor,
    SetParameters,
    SetRoles,
)
from tclearn.ledger.history import rebuild, spent_by_member, to_json
from tclearn.ledger.ledger import ZERO_ADDRESS, ExportRecord, Ledger, Predecessor
from tclearn.ledger.memory import InMemoryLedger, MemoryChain
from tclearn.ledger.votes import HALF_ORDER, Domain, SignedVote, in_signer_order, recover_signer, sign_vote
from tclearn.types import ModelState, RejectReason, Role, Variant
from tests.governing import govern

TIMEOUT = 600
PROPOSAL_TIMEOUT = 3 * TIMEOUT
ACCOUNTS = 8
BACKENDS = ["contract", "memory"]
VALIDATING = Role.MEMBER | Role.VALIDATOR
SECP256K1_ORDER = 2 * HALF_ORDER + 1


def digest(label: str) -> bytes:
    """A fixed 32-byte hash per label, the same on both backends."""
    return hashlib.sha256(label.encode()).digest()


PARAMETERS = Parameters(
    digest("policy"),
    general_timeout=TIMEOUT,
    voting_timeout=TIMEOUT,
    proposal_timeout=PROPOSAL_TIMEOUT,
    min_validators=2,
)


@dataclass
class Coalition:
    """A coalition founded by four validating hospitals on one backend, and the way to move its clock.

    `deployer` deployed it and is no member; `spare` accounts are funded outsiders."""

    ledger: Ledger
    deployer: LocalAccount
    hospitals: list[LocalAccount]
    spare: list[LocalAccount]
    advance: Callable[[int], None]

    def account(self, address: str) -> LocalAccount:
        return next(a for a in [self.deployer, *self.hospitals, *self.spare] if a.address == address)

    def submit(self, proposer: LocalAccount, label: str, charge: int = 0) -> int:
        ledger = self.ledger
        return ledger.submit(
            proposer, ledger.head(), digest(label), f"vault://{label}", digest(label + "/meta"), charge
        ).model_id

    def general(self, model_id: int) -> LocalAccount:
        return self.account(self.ledger.get_model(model_id, with_uri=False).general)

    def open(self, model_id: int, ok: bool = True) -> None:
        self.ledger.open_candidate(self.general(model_id), model_id, ok, digest(f"report/{model_id}"))

    def voters(self, model_id: int) -> list[LocalAccount]:
        proposer = self.ledger.get_model(model_id, with_uri=False).proposer
        return [h for h in self.hospitals if h.address != proposer]

    def vote(self, voter: LocalAccount, model_id: int, approve: bool) -> ModelState:
        evidence = digest(f"evidence/{model_id}/{voter.address}")
        return self.ledger.vote(voter, model_id, approve, 0.9 if approve else 0.1, 0.8, evidence).state

    def signed(self, voter: LocalAccount, model_id: int, approve: bool, domain: Domain | None = None) -> SignedVote:
        """`voter`'s vote on `model_id`, signed for this coalition (or for `domain`)."""
        model_hash = self.ledger.get_model(model_id, with_uri=False).model_hash
        evidence = digest(f"evidence/{model_id}/{voter.address}")
        score = 0.9 if approve else 0.1
        return sign_vote(voter, domain or self.ledger.domain, model_id, model_hash, approve, score, 0.8, evidence)

    def govern(self, action: Action) -> None:
        govern(self.ledger, self.hospitals, action)


def deploy(backend: str, **settings: Any) -> tuple[Ledger, list[LocalAccount], Callable[[int], None]]:
    """A coalition deployed by the first of the accounts on `backend` with `settings`, the accounts and its clock."""
    if backend == "contract":
        chain = embedded_chain(ACCOUNTS)
        contract, _ = LedgerClient.deploy(chain, chain.dev_keys[0], **settings)
        return contract, chain.dev_keys, chain.advance_time
    memory = MemoryChain()
    accounts = dev_accounts(ACCOUNTS)
    ledger, _ = InMemoryLedger.deploy(memory, accounts[0], **settings)
    return ledger, accounts, memory.advance_time


def founders(accounts: list[LocalAccount]) -> list[Admit]:
    return [Admit(h.address, VALIDATING, digest(f"key/{i}"), f"hospital-{i}") for i, h in enumerate(accounts)]


def found(backend: str, parameters: Parameters = PARAMETERS) -> Coalition:
    """Deploys a coalition on `backend`, founded by four validating hospitals."""
    accounts = dev_accounts(ACCOUNTS)
    ledger, accounts, advance = deploy(
        backend,
        variant=Variant.B,
        genesis_hash=digest("genesis"),
        genesis_uri="vault://genesis",
        parameters=parameters,
        founders=founders(accounts[1:5]),
    )
    return Coalition(ledger, accounts[0], accounts[1:5], accounts[5:], advance)


@pytest.fixture(params=BACKENDS)
def co(request: pytest.FixtureRequest) -> Coalition:
    return found(request.param)


def refusal(call: Callable[[], object], co: Coalition) -> ContractRevert:
    """The refusal `call` raises; checks that it left the ledger's history untouched."""
    before = len(co.ledger.events())
    with pytest.raises(ContractRevert) as info:
        call()
    assert len(co.ledger.events()) == before, "a refused call left events behind"
    return info.value


# ---- founding ---------------------------------------------------------------------------------------------


def test_the_founders_and_parameters_are_set_at_deployment(co: Coalition) -> None:
    ledger = co.ledger
    names = [e.name for e in ledger.events()]
    assert names == [
        "GlobalTestSetChanged",
        "PolicyChanged",
        "ParametersChanged",
        "Founded",
        "Submitted",
        "Committed",
        *["MemberRegistered"] * 4,
    ]
    founded = ledger.events()[3].args
    assert founded == {
        "predecessorChainId": 0,
        "predecessor": ZERO_ADDRESS,
        "predecessorHeadId": 0,
        "genesisHash": digest("genesis"),
    }
    assert ledger.parameters() == PARAMETERS and ledger.policy_hash() == digest("policy")
    assert [(m.address, m.roles, m.active, m.member_since, m.validator_since) for m in ledger.members()] == [
        (h.address, VALIDATING, True, 0, 1) for h in co.hospitals
    ]
    assert ledger.get_member(co.deployer.address) is None and ledger.validator_count() == 4
    assert ledger.domain == Domain(ledger.chain.chain_id, ledger.address)
    genesis = ledger.get_model(0)
    assert (genesis.state, genesis.uri, genesis.metadata_hash) == (ModelState.COMMITTED, "vault://genesis", b"\0" * 32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("change", "error", "args"),
    [
        ({"parameters": PARAMETERS.replace(policy_hash=b"\0" * 32)}, "ZeroHash", {}),
        ({"genesis_hash": b"\0" * 32}, "ZeroHash", {}),
        ({"variant": 4}, "InvalidVariant", {"variant": 4}),
        ({"parameters": PARAMETERS.replace(min_validators=5)}, "TooFewValidators", {"remaining": 4, "needed": 5}),
        ({"founders": [Admit(ZERO_ADDRESS, Role.MEMBER)]}, "ZeroAddress", {}),
    ],
)
def test_a_bad_founding_is_refused(backend: str, change: dict[str, Any], error: str, args: dict[str, Any]) -> None:
    hospitals = dev_accounts(ACCOUNTS)[1:5]
    settings: dict[str, Any] = {
        "variant": Variant.A,
        "genesis_hash": digest("genesis"),
        "genesis_uri": "g",
        "parameters": PARAMETERS,
        "founders": founders(hospitals),
    }
    with pytest.raises(ContractRevert) as info:
        deploy(backend, **{**settings, **change})
    assert (info.value.error, info.value.error_args) == (error, args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_migrated_coalition_names_its_predecessor(backend: str) -> None:
    old = dev_accounts(ACCOUNTS)[7].address
    ledger, *_ = deploy(
        backend,
        variant=Variant.C,
        genesis_hash=digest("head of the old one"),
        genesis_uri="vault://migrated",
        parameters=PARAMETERS,
        founders=founders(dev_accounts(ACCOUNTS)[1:3]),
        predecessor=Predecessor(31337, old, 12),
    )
    founded = next(e for e in ledger.events() if e.name == "Founded")
    assert founded.args == {
        "predecessorChainId": 31337,
        "predecessor": old,
        "predecessorHeadId": 12,
        "genesisHash": digest("head of the old one"),
    }
    assert ledger.variant() is Variant.C and ledger.validator_count() == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_coalition_needs_a_founder(backend: str) -> None:
    settings: dict[str, Any] = {"variant": Variant.A, "genesis_hash": digest("g"), "genesis_uri": "g"}
    with pytest.raises(ConfigError, match="at least one founder"):
        deploy(backend, **settings, parameters=PARAMETERS, founders=[])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_duplicate_founder_is_refused(backend: str) -> None:
    h = dev_accounts(2)[1]
    settings: dict[str, Any] = {"variant": Variant.A, "genesis_hash": digest("g"), "genesis_uri": "g"}
    with pytest.raises(ContractRevert) as info:
        deploy(backend, **settings, parameters=PARAMETERS.replace(min_validators=0), founders=founders([h, h]))
    assert (info.value.error, info.value.error_args) == ("AlreadyMember", {"account": h.address})


# ---- rounds ---------------------------------------------------------------------------------------------


def test_a_round_commits_with_two_thirds_and_moves_the_head(co: Coalition) -> None:
    ledger, proposer = co.ledger, co.hospitals[0]
    sub = ledger.submit(proposer, 0, digest("m1"), "vault://m1", digest("m1/meta"))
    assert (sub.model_id, sub.eligible) == (1, 3)
    assert sub.general in [h.address for h in co.hospitals[1:]]
    assert sub.general_deadline == ledger.chain.timestamp() + TIMEOUT
    assert sub.tx.has("Submitted") and sub.tx.gas_used >= 0 and sub.tx.tx_hash.startswith("0x")
    co.open(1)
    opened = ledger.get_model(1)
    assert (opened.state, opened.uri, opened.proposer, opened.parent_id) == (
        ModelState.OPEN,
        "vault://m1",
        proposer.address,
        0,
    )
    first, second, third = co.voters(1)
    assert co.vote(first, 1, True) is ModelState.OPEN
    assert ledger.has_voted(1, first.address) and not ledger.has_voted(1, second.address)
    assert co.vote(second, 1, True) is ModelState.COMMITTED
    record = ledger.get_model(1, with_uri=False)
    assert (ledger.head(), record.state, record.approvals, record.rejections, record.uri) == (
        1,
        ModelState.COMMITTED,
        2,
        0,
        None,
    )
    late = refusal(lambda: co.vote(third, 1, True), co)
    assert (late.error, late.error_args) == ("WrongState", {"id": 1, "state": "committed"})


def test_votes_reject_once_two_thirds_can_no_longer_be_reached(co: Coalition) -> None:
    mid = co.submit(co.hospitals[1], "m1")
    co.open(mid)
    assert [co.vote(v, mid, False) for v in co.voters(mid)[:2]] == [ModelState.OPEN, ModelState.REJECTED]
    record = co.ledger.get_model(mid)
    assert (record.state, record.rejections, co.ledger.head()) == (ModelState.REJECTED, 2, 0)
    assert rebuild(co.ledger.events()).candidates[mid].reject_reason is RejectReason.VOTES


def test_the_general_rejects_a_broken_candidate(co: Coalition) -> None:
    mid = co.submit(co.hospitals[0], "m1")
    tx = co.ledger.open_candidate(co.general(mid), mid, False, digest("broken"))
    rejected = tx.event("Rejected")
    assert rejected is not None
    assert (rejected.args["reason"], rejected.args["evidenceHash"]) == (int(RejectReason.INTEGRITY), digest("broken"))
    assert co.ledger.get_model(mid).state is ModelState.REJECTED


# ---- refusals -------------------------------------------------------------------------------------------


def test_submit_refusals(co: Coalition) -> None:
    ledger, member = co.ledger, co.hospitals[0]
    stale = refusal(lambda: ledger.submit(member, 5, digest("a"), "u", digest("b")), co)
    assert (stale.error, stale.error_args) == ("StaleParent", {"parentId": 5, "head": 0})
    assert "parent model 5 is not the head (0)" in str(stale)
    co.submit(member, "m1")
    duplicate = refusal(lambda: ledger.submit(co.hospitals[1], 0, digest("m1"), "u", digest("b")), co)
    assert (duplicate.error, duplicate.error_args) == (
        "DuplicateModel",
        {"modelHash": "0x" + digest("m1").hex(), "existingId": 1},
    )
    outsider = refusal(lambda: ledger.submit(co.spare[0], 0, digest("c"), "u", digest("d")), co)
    assert (outsider.error, outsider.error_args) == ("NotMember", {"account": co.spare[0].address})
    zero = refusal(lambda: ledger.submit(member, 0, digest("e"), "u", b"\0" * 32), co)
    assert zero.error == "ZeroHash"
    unknown = refusal(lambda: ledger.get_model(99), co)
    assert (unknown.error, str(unknown)) == ("UnknownModel", "getModel refused (UnknownModel): no model with id 99")


def test_vote_refusals(co: Coalition) -> None:
    proposer = co.hospitals[0]
    mid = co.submit(proposer, "m1")
    early = refusal(lambda: co.vote(co.voters(mid)[0], mid, True), co)
    assert (early.error, early.error_args) == ("WrongState", {"id": mid, "state": "submitted"})
    co.open(mid)
    own = refusal(lambda: co.vote(proposer, mid, True), co)
    assert (own.error, own.error_args) == ("ProposerCannotVote", {"proposer": proposer.address, "id": mid})
    voter = co.voters(mid)[0]
    co.vote(voter, mid, False)
    twice = refusal(lambda: co.vote(voter, mid, True), co)
    assert str(twice) == f"vote on {mid} refused (AlreadyVoted): {voter.address} has already voted on candidate {mid}"
    outsider = refusal(lambda: co.vote(co.spare[0], mid, True), co)
    assert (outsider.error, outsider.error_args) == ("NotValidator", {"account": co.spare[0].address})
    co.govern(Admit(co.spare[0].address, Role.VALIDATOR))
    newcomer = refusal(lambda: co.vote(co.spare[0], mid, True), co)
    assert (newcomer.error, newcomer.error_args) == ("NotEligible", {"validator": co.spare[0].address, "id": mid})


def test_only_the_general_opens_and_only_before_its_deadline(co: Coalition) -> None:
    mid = co.submit(co.hospitals[0], "m1")
    general = co.general(mid)
    other = next(v for v in co.voters(mid) if v.address != general.address)
    wrong = refusal(lambda: co.ledger.open_candidate(other, mid, True, digest("r")), co)
    assert (wrong.error, wrong.error_args) == ("NotGeneral", {"caller": other.address, "general": general.address})
    co.advance(TIMEOUT + 1)
    late = refusal(lambda: co.open(mid), co)
    assert late.error == "DeadlinePassed" and late.error_args["id"] == mid


# ---- deadlines ------------------------------------------------------------------------------------------


def test_expire_after_the_deadline_only(co: Coalition) -> None:
    ledger, keeper = co.ledger, co.spare[0]
    waiting = co.submit(co.hospitals[0], "m1")
    early = refusal(lambda: ledger.expire(keeper, waiting), co)
    assert early.error == "DeadlineNotReached"
    assert early.error_args["deadline"] == ledger.get_model(waiting).general_deadline
    co.advance(TIMEOUT + 1)
    assert ledger.expire(keeper, waiting).has("Expired")
    assert ledger.get_model(waiting).state is ModelState.EXPIRED
    again = refusal(lambda: ledger.expire(keeper, waiting), co)
    assert (again.error, again.error_args) == ("WrongState", {"id": waiting, "state": "expired"})


def test_a_silent_general_is_replaced(co: Coalition) -> None:
    ledger, keeper, proposer = co.ledger, co.spare[0], co.hospitals[0]
    mid = co.submit(proposer, "m1")
    first = co.general(mid)
    assert refusal(lambda: ledger.reassign_general(keeper, mid), co).error == "DeadlineNotReached"
    co.advance(TIMEOUT + 1)
    tx = ledger.reassign_general(keeper, mid)
    reassigned = tx.event("GeneralReassigned")
    assert reassigned is not None and reassigned.args["previousGeneral"] == first.address
    second = co.general(mid)
    assert reassigned.args["general"] == second.address and second.address not in (first.address, proposer.address)
    assert ledger.get_model(mid).general_deadline == ledger.chain.timestamp() + TIMEOUT
    assert refusal(lambda: ledger.open_candidate(first, mid, True, digest("r")), co).error == "NotGeneral"
    co.open(mid)
    assert ledger.get_model(mid).state is ModelState.OPEN


def test_siblings_go_stale_when_one_commits(co: Coalition) -> None:
    ledger = co.ledger
    winner, loser, opened = (
        co.submit(co.hospitals[0], "a"),
        co.submit(co.hospitals[1], "b"),
        co.submit(co.hospitals[2], "c"),
    )
    co.open(winner)
    co.open(opened)
    for v in co.voters(winner)[:2]:
        co.vote(v, winner, True)
    stale = refusal_with_events(lambda: co.open(loser), co)
    assert (stale.error, stale.error_args) == ("Stale", {"id": loser})
    voter = co.voters(opened)[0]
    assert refusal_with_events(lambda: co.vote(voter, opened, True), co).error == "Stale"
    assert [ledger.get_model(i).state for i in (winner, loser, opened)] == [
        ModelState.COMMITTED,
        ModelState.STALE,
        ModelState.STALE,
    ]
    assert ledger.mark_stale(co.spare[0], loser).events == ()
    assert [e.args["id"] for e in ledger.events() if e.name == "Staled"] == [loser, opened]
    late = refusal(lambda: ledger.submit(co.hospitals[3], 0, digest("d"), "u", digest("e")), co)
    assert (late.error, late.error_args) == ("StaleParent", {"parentId": 0, "head": winner})


def refusal_with_events(call: Callable[[], object], co: Coalition) -> ContractRevert:
    """A call refused as `Stale`: the transaction went through (it marked the candidate) and says so."""
    before = len(co.ledger.events())
    with pytest.raises(ContractRevert) as info:
        call()
    assert [e.name for e in co.ledger.events()[before:]] == ["Staled"]
    return info.value


# ---- governance -------------------------------------------------------------------------------------------


def test_a_proposal_admits_a_member_once_two_thirds_approve(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3), (newcomer, keeper, *_) = co.ledger, co.hospitals, co.spare
    action = Admit(newcomer.address, VALIDATING, digest("key/new"), "newcomer")
    proposal = ledger.propose(h0, action)
    assert (proposal.id, proposal.action, proposal.action_hash, proposal.state) == (
        0,
        action,
        keccak(action.encode()),
        ProposalState.PENDING,
    )
    assert (proposal.proposer, proposal.eligible, proposal.approvals, proposal.rejections, proposal.needed) == (
        h0.address,
        4,
        1,
        0,
        3,
    )
    assert proposal.deadline == ledger.chain.timestamp() + PROPOSAL_TIMEOUT
    assert [(b.member, b.approve) for b in proposal.ballots] == [(h0.address, True)]
    assert ledger.has_ballot(0, h0.address) and not ledger.has_ballot(0, h1.address)
    early = refusal(lambda: ledger.execute(keeper, 0), co)
    assert (early.error, early.error_args) == ("ProposalNotApproved", {"proposal": 0, "approvals": 1, "needed": 3})
    ledger.ballot(h1, 0, True)
    assert refusal(lambda: ledger.execute(keeper, 0), co).error_args["approvals"] == 2
    tx = ledger.ballot(h2, 0, True)
    assert [(e.name, e.args) for e in tx.events] == [("Ballot", {"proposal": 0, "member": h2.address, "approve": True})]
    assert ledger.proposal(0).executable and ledger.get_member(newcomer.address) is None
    executed = ledger.execute(keeper, 0)  # anyone executes an approved proposal
    assert [e.name for e in executed.events] == ["MemberRegistered", "ProposalExecuted"]
    member = ledger.get_member(newcomer.address)
    assert member is not None
    assert (member.roles, member.active, member.name, member.member_since, member.validator_since) == (
        VALIDATING,
        True,
        "newcomer",
        1,
        1,
    )
    assert ledger.validator_count() == 5 and ledger.proposal(0).state is ProposalState.EXECUTED
    assert ledger.proposal_count() == 1 and [p.id for p in ledger.proposals()] == [0]
    again = refusal(lambda: ledger.execute(keeper, 0), co)
    assert (again.error, again.error_args) == ("ProposalNotPending", {"proposal": 0, "state": "executed"})
    assert ledger.propose(h3, Remove(h0.address)).eligible == 5  # the new member counts from now on


def test_proposals_set_roles_remove_members_and_set_the_parameters(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3) = co.ledger, co.hospitals
    co.govern(SetRoles(h3.address, Role.MEMBER | Role.AUDITOR))
    member = ledger.get_member(h3.address)
    assert member is not None and (member.roles, member.active) == (Role.MEMBER | Role.AUDITOR, True)
    assert ledger.validator_count() == 3
    co.govern(Remove(h2.address))
    removed = ledger.get_member(h2.address)
    assert removed is not None and (removed.roles, removed.active) == (Role.NONE, False)
    assert ledger.validator_count() == 2
    floor = ledger.propose(h0, Remove(h1.address))
    for h in (h1, h3):
        ledger.ballot(h, floor.id, True)
    below = refusal(lambda: ledger.execute(h0, floor.id), co)
    assert (below.error, below.error_args) == ("TooFewValidators", {"remaining": 1, "needed": 2})
    assert str(below).endswith("this would leave 1 active validators, fewer than the 2 required")
    assert ledger.proposal(floor.id).state is ProposalState.PENDING  # a refused execution changes nothing
    changed = PARAMETERS.replace(
        policy_hash=digest("policy/2"),
        global_test_set_hash=digest("G"),
        voting_timeout=60,
        min_validators=1,
        epsilon_cap=2_500_000,
    )
    co.govern(SetParameters(changed))
    assert ledger.parameters() == changed and ledger.policy_hash() == digest("policy/2")
    assert [e.args for e in ledger.events() if e.name == "ParametersChanged"][-1] == {
        "generalTimeout": TIMEOUT,
        "votingTimeout": 60,
        "proposalTimeout": PROPOSAL_TIMEOUT,
        "minValidators": 1,
        "epsilonCap": 2_500_000,
    }
    ledger.execute(h0, floor.id)  # the floor is 1 now
    assert ledger.validator_count() == 1


@pytest.mark.parametrize(
    ("action", "remaining"),
    [
        (lambda h: SetRoles(h.address, Role.MEMBER), 3),
        (lambda h: Remove(h.address), 3),
        (lambda h: SetRoles(h.address, Role.VALIDATOR | Role.AUDITOR), None),
        (lambda h: Admit(dev_accounts(ACCOUNTS)[5].address, Role.MEMBER), None),
    ],
)
def test_the_validator_floor_is_checked_at_execution(
    co: Coalition, action: Callable[[LocalAccount], Action], remaining: int | None
) -> None:
    co.govern(SetParameters(PARAMETERS.replace(min_validators=4)))
    pid = co.ledger.propose(co.hospitals[0], action(co.hospitals[3])).id
    for h in co.hospitals[1:3]:
        co.ledger.ballot(h, pid, True)
    if remaining is None:
        assert co.ledger.execute(co.spare[0], pid).has("ProposalExecuted")
        assert co.ledger.validator_count() == 4
    else:
        below = refusal(lambda: co.ledger.execute(co.spare[0], pid), co)
        assert (below.error, below.error_args) == ("TooFewValidators", {"remaining": remaining, "needed": 4})


def test_the_supervisor_rotates(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3), outsider = co.ledger, co.hospitals, co.spare[0]
    co.govern(RotateSupervisor(ZERO_ADDRESS, h0.address))
    assert ledger.get_member(h0.address).roles == VALIDATING | Role.SUPERVISOR  # type: ignore[union-attr]
    co.govern(Admit(outsider.address, Role.SUPERVISOR, name="overseer"))
    tx = govern(ledger, co.hospitals, RotateSupervisor(outsider.address, h1.address))
    assert [(e.name, e.args.get("account")) for e in tx.events] == [
        ("RolesChanged", outsider.address),
        ("RolesChanged", h1.address),
        ("SupervisorRotated", None),
        ("ProposalExecuted", None),
    ]
    assert tx.events[2].args == {"from": outsider.address, "to": h1.address}
    gone = ledger.get_member(outsider.address)
    assert gone is not None and (gone.roles, gone.active) == (Role.NONE, False)  # supervisor only: no longer a member
    assert ledger.get_member(h1.address).roles == VALIDATING | Role.SUPERVISOR  # type: ignore[union-attr]
    assert ledger.propose(h2, Remove(h3.address)).eligible == 4
    co.govern(RotateSupervisor(h0.address, h2.address))
    assert ledger.get_member(h0.address).roles == VALIDATING  # type: ignore[union-attr]
    assert ledger.get_member(h0.address).active  # type: ignore[union-attr]
    not_one = refusal(lambda: ledger.propose(h0, RotateSupervisor(h3.address, h0.address)), co)
    assert (not_one.error, not_one.error_args) == ("NotSupervisor", {"account": h3.address})
    nobody = refusal(lambda: ledger.propose(h0, RotateSupervisor(h2.address, outsider.address)), co)
    assert (nobody.error, nobody.error_args) == ("NotMember", {"account": outsider.address})


def test_the_supervisor_role_is_never_handed_to_its_holder_nor_from_a_departed_one(co: Coalition) -> None:
    """Handing a supervisor-only member's role to itself would deactivate it, then give an inactive member the role,
    and a later rotation from it would count it out twice: refused when proposed and when executed."""
    ledger, overseer, h0 = co.ledger, co.spare[0], co.hospitals[0]
    co.govern(Admit(overseer.address, Role.SUPERVISOR))
    itself = refusal(lambda: ledger.propose(h0, RotateSupervisor(overseer.address, overseer.address)), co)
    assert (itself.error, itself.error_args) == ("InvalidAction", {"kind": 5})
    co.govern(RotateSupervisor(overseer.address, co.hospitals[1].address))  # a supervisor-only member leaves
    assert not ledger.get_member(overseer.address).active  # type: ignore[union-attr]
    gone = refusal(lambda: ledger.propose(h0, RotateSupervisor(overseer.address, co.hospitals[2].address)), co)
    assert (gone.error, gone.error_args) == ("NotSupervisor", {"account": overseer.address})
    active = sum(m.active for m in ledger.members())
    assert ledger.propose(h0, Remove(co.hospitals[2].address)).eligible == active == 4


def test_the_last_member_cannot_be_removed(co: Coalition) -> None:
    """With no validator floor, governance may shrink the coalition to one member but never to none: nobody could
    ever propose again."""
    ledger, (h0, h1, h2, h3) = co.ledger, co.hospitals
    co.govern(SetParameters(PARAMETERS.replace(min_validators=0)))
    for leaving in (h3, h2, h1):
        govern(ledger, [h for h in co.hospitals if ledger.get_member(h.address).active], Remove(leaving.address))  # type: ignore[union-attr]
    pid = ledger.propose(h0, Remove(h0.address)).id
    last = refusal(lambda: ledger.execute(h0, pid), co)
    assert (last.error, last.error_args) == ("NoMembersLeft", {})
    assert ledger.get_member(h0.address).active  # type: ignore[union-attr]


def test_more_than_a_third_rejecting_rejects_a_proposal(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3) = co.ledger, co.hospitals
    pid = ledger.propose(h0, Remove(h3.address)).id
    assert not ledger.ballot(h1, pid, False).has("ProposalRejected")  # 1 of 4 is not more than a third
    tx = ledger.ballot(h2, pid, False)
    assert [e.name for e in tx.events] == ["Ballot", "ProposalRejected"]
    rejected = ledger.proposal(pid)
    assert (rejected.state, rejected.approvals, rejected.rejections) == (ProposalState.REJECTED, 1, 2)
    late = refusal(lambda: ledger.ballot(h3, pid, True), co)
    assert (late.error, late.error_args) == ("ProposalNotPending", {"proposal": pid, "state": "rejected"})
    assert refusal(lambda: ledger.execute(h0, pid), co).error == "ProposalNotPending"


def test_a_proposal_expires_at_its_deadline(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3) = co.ledger, co.hospitals
    pid = ledger.propose(h0, Remove(h3.address)).id
    ledger.ballot(h1, pid, True)
    ledger.ballot(h2, pid, True)
    deadline = ledger.proposal(pid).deadline
    co.advance(PROPOSAL_TIMEOUT + 1)
    assert ledger.proposal(pid).state is ProposalState.EXPIRED
    late = refusal(lambda: ledger.execute(h0, pid), co)
    assert (late.error, late.error_args) == ("ProposalExpired", {"proposal": pid, "deadline": deadline})
    assert refusal(lambda: ledger.ballot(h3, pid, False), co).error == "ProposalExpired"
    assert ledger.get_member(h3.address).active  # type: ignore[union-attr]


def roles_of_16(account: str) -> Admit:
    """An admission with roles no record allows (16), as a hand-made transaction could carry."""
    action = Admit(account, Role.MEMBER)
    object.__setattr__(action, "roles", Role(16))
    return action


@pytest.mark.parametrize(
    ("make", "error", "args"),
    [
        (lambda co: Admit(co.hospitals[1].address, Role.MEMBER), "AlreadyMember", {"account": 1}),
        (lambda co: Admit(ZERO_ADDRESS, Role.MEMBER), "ZeroAddress", {}),
        (lambda co: roles_of_16(co.spare[0].address), "InvalidRoles", {"roles": 16}),
        (lambda co: SetRoles(co.spare[0].address, Role.MEMBER), "NotMember", {"account": "spare"}),
        (lambda co: Remove(co.spare[0].address), "NotMember", {"account": "spare"}),
        (lambda co: SetParameters(PARAMETERS.replace(policy_hash=b"\0" * 32)), "ZeroHash", {}),
    ],
)
def test_a_proposal_the_coalition_cannot_hold_is_refused(
    co: Coalition, make: Callable[[Coalition], Action], error: str, args: dict[str, Any]
) -> None:
    named = {k: co.hospitals[v].address if v == 1 else co.spare[0].address for k, v in args.items() if k != "roles"}
    refused = refusal(lambda: co.ledger.propose(co.hospitals[0], make(co)), co)
    assert (refused.error, refused.error_args) == (error, {**args, **named})
    assert co.ledger.proposal_count() == 0


def test_governance_refusals(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3), (newcomer, outsider, *_) = co.ledger, co.hospitals, co.spare
    stranger = refusal(lambda: ledger.propose(outsider, Remove(h3.address)), co)
    assert (stranger.error, stranger.error_args) == ("NotMember", {"account": outsider.address})
    unknown = refusal(lambda: ledger.ballot(h0, 7, True), co)
    assert (unknown.error, unknown.error_args) == ("UnknownProposal", {"proposal": 7})
    assert refusal(lambda: ledger.proposal(7), co).error == "UnknownProposal"
    assert not ledger.has_ballot(7, h0.address)
    before = ledger.propose(h0, Remove(h3.address)).id
    own = refusal(lambda: ledger.ballot(h0, before, True), co)
    assert (own.error, own.error_args) == ("AlreadyBalloted", {"member": h0.address, "proposal": before})
    ledger.ballot(h1, before, False)
    assert refusal(lambda: ledger.ballot(h1, before, True), co).error == "AlreadyBalloted"
    co.govern(Admit(newcomer.address, VALIDATING))
    late = refusal(lambda: ledger.ballot(newcomer, before, True), co)  # not a member when it was proposed
    assert (late.error, late.error_args) == ("NotBallotEligible", {"member": newcomer.address, "proposal": before})
    outside = refusal(lambda: ledger.ballot(outsider, before, True), co)
    assert (outside.error, outside.error_args) == (
        "NotBallotEligible",
        {"member": outsider.address, "proposal": before},
    )
    twice = [ledger.propose(h, Admit(outsider.address, Role.MEMBER)).id for h in (h2, h3)]
    for pid in twice:
        for h in (h0, h1, newcomer):
            ledger.ballot(h, pid, True)
    ledger.execute(h0, twice[0])
    again = refusal(lambda: ledger.execute(h0, twice[1]), co)  # re-checked at execution
    assert (again.error, again.error_args) == ("AlreadyMember", {"account": outsider.address})


# ---- signed votes -------------------------------------------------------------------------------------------


def opened(co: Coalition, label: str = "m1") -> int:
    mid = co.submit(co.hospitals[0], label)
    co.open(mid)
    return mid


@pytest.mark.parametrize("approve", [True, False])
def test_signed_votes_decide_a_candidate_in_one_transaction(co: Coalition, approve: bool) -> None:
    ledger, keeper = co.ledger, co.spare[0]
    mid = opened(co)
    first, second, third = co.voters(mid)
    batch = [co.signed(v, mid, approve) for v in (second, first)]
    outcome = ledger.decide(keeper, mid, batch)  # anyone carries them
    assert outcome.state is (ModelState.COMMITTED if approve else ModelState.REJECTED)
    voted = [e.args for e in outcome.tx.events if e.name == "Voted"]
    assert [a["validator"] for a in voted] == sorted((first.address, second.address), key=lambda a: int(a, 16))
    assert all((a["approve"], a["scoreLocal"]) == (approve, 800_000) for a in voted)
    record = ledger.get_model(mid, with_uri=False)
    assert (record.approvals, record.rejections) == ((2, 0) if approve else (0, 2))
    assert ledger.head() == (mid if approve else 0)
    assert not ledger.has_voted(mid, first.address)  # signed votes leave no vote bits
    replay = refusal(lambda: ledger.decide(keeper, mid, batch), co)
    state = "committed" if approve else "rejected"
    assert (replay.error, replay.error_args) == ("WrongState", {"id": mid, "state": state})
    assert refusal(lambda: co.vote(third, mid, True), co).error == "WrongState"


def test_signed_votes_add_to_direct_votes(co: Coalition) -> None:
    ledger, keeper = co.ledger, co.spare[0]
    mid = opened(co)
    first, second, _ = co.voters(mid)
    co.vote(first, mid, True)
    twice = refusal(lambda: ledger.decide(keeper, mid, [co.signed(first, mid, True)]), co)
    assert (twice.error, twice.error_args) == ("AlreadyVoted", {"validator": first.address, "id": mid})
    assert ledger.decide(keeper, mid, [co.signed(second, mid, True)]).state is ModelState.COMMITTED
    assert ledger.get_model(mid).approvals == 2 and ledger.has_voted(mid, first.address)


def forged(vote: SignedVote) -> SignedVote:
    """`vote` with its approval flipped after signing."""
    return SignedVote(**{**vote.__dict__, "approve": not vote.approve})


def high_s(vote: SignedVote) -> SignedVote:
    """The malleable twin of `vote`'s signature: (r, n - s) with the other v recovers the same key."""
    v, r, s = vote.vrs
    twin = (SECP256K1_ORDER - int.from_bytes(s, "big")).to_bytes(32, "big")
    return SignedVote(**{**vote.__dict__, "signature": r + twin + bytes([55 - v])})


def test_a_bad_batch_is_refused_by_name(co: Coalition) -> None:
    ledger, keeper, proposer, outsider = co.ledger, co.spare[0], co.hospitals[0], co.spare[1]
    mid = opened(co)
    first, second, third = co.voters(mid)
    domain = ledger.domain

    def refused(batch: list[SignedVote]) -> tuple[str, dict[str, Any]]:
        error = refusal(lambda: ledger.decide(keeper, mid, batch), co)
        return error.error, error.error_args

    bad = forged(co.signed(first, mid, True))
    recovered = recover_signer(bad, domain)
    assert recovered not in (None, first.address)
    assert refused([bad, co.signed(second, mid, True)]) == ("NotValidator", {"account": recovered})
    for elsewhere in (Domain(domain.chain_id + 1, domain.contract), Domain(domain.chain_id, outsider.address)):
        error, args = refused([co.signed(first, mid, True, elsewhere), co.signed(second, mid, True)])
        assert error == "NotValidator" and args["account"] not in {h.address for h in co.hospitals}
    assert refused([co.signed(outsider, mid, True)]) == ("NotValidator", {"account": outsider.address})
    assert refused([co.signed(proposer, mid, True), co.signed(first, mid, True)]) == (
        "ProposerCannotVote",
        {"proposer": proposer.address, "id": mid},
    )
    same = co.signed(first, mid, True)
    assert refused([same, same]) == ("AlreadyVoted", {"validator": first.address, "id": mid})
    assert refused([co.signed(first, mid, True)]) == (
        "NoDecision",
        {"id": mid, "approvals": 1, "rejections": 0, "eligible": 3},
    )
    assert refused([]) == ("NoDecision", {"id": mid, "approvals": 0, "rejections": 0, "eligible": 3})
    assert recover_signer(high_s(same), domain) is None
    assert refused([high_s(same), co.signed(second, mid, True)]) == ("BadSignature", {"index": 0})
    low, high = sorted((first, second), key=lambda a: int(a.address, 16))
    swapped = [  # each claims the other's address: a batch goes in the order of who signed, not of the claims
        SignedVote(**{**co.signed(low, mid, True).__dict__, "signer": high.address}),
        SignedVote(**{**co.signed(high, mid, True).__dict__, "signer": low.address}),
    ]
    assert [v.signer for v in in_signer_order(swapped, domain)] == [high.address, low.address]
    # (an unsorted batch, which no client sends, is refused as UnsortedVotes: test_contract sends one raw)
    co.govern(Admit(outsider.address, VALIDATING))
    assert refused([co.signed(outsider, mid, True), co.signed(third, mid, True)]) == (
        "NotEligible",
        {"validator": outsider.address, "id": mid},
    )
    co.advance(TIMEOUT + 1)
    late = refused([co.signed(first, mid, True), co.signed(second, mid, True)])
    assert late[0] == "DeadlinePassed"
    assert ledger.get_model(mid).state is ModelState.OPEN


def test_signed_votes_on_a_stale_candidate_only_mark_it(co: Coalition) -> None:
    ledger = co.ledger
    winner, loser = opened(co, "a"), opened(co, "b")
    voters = co.voters(winner)
    batch = [co.signed(v, loser, True) for v in co.voters(loser)[:2]]
    ledger.decide(co.spare[0], winner, [co.signed(v, winner, True) for v in voters[:2]])
    stale = refusal_with_events(lambda: ledger.decide(co.spare[0], loser, batch), co)
    assert (stale.error, stale.error_args) == ("Stale", {"id": loser})


# ---- privacy budget -----------------------------------------------------------------------------------------

CAP = 3_000_000  # epsilon 3, in millionths


@pytest.fixture(params=BACKENDS)
def capped(request: pytest.FixtureRequest) -> Coalition:
    """A coalition whose members may each spend epsilon 3 over all their candidates."""
    return found(request.param, PARAMETERS.replace(epsilon_cap=CAP))


def spent(co: Coalition, account: LocalAccount) -> tuple[int, int]:
    """`account`'s spending as the counter and the member record hold it."""
    member = co.ledger.get_member(account.address)
    assert member is not None
    return co.ledger.privacy_spent(account.address), member.epsilon_spent


def test_a_charge_is_added_to_the_proposers_spending_and_logged(capped: Coalition) -> None:
    ledger, (h0, h1, *_) = capped.ledger, capped.hospitals
    assert ledger.parameters().epsilon_cap == CAP and spent(capped, h0) == (0, 0)
    sub = ledger.submit(h0, 0, digest("m1"), "vault://m1", digest("m1/meta"), 1_250_000)
    assert [e.name for e in sub.tx.events] == ["Submitted", "PrivacySpent"]
    charged = sub.tx.event("PrivacySpent")
    assert charged is not None
    assert charged.args == {"id": sub.model_id, "member": h0.address, "charge": 1_250_000, "spent": 1_250_000}
    assert spent(capped, h0) == (1_250_000, 1_250_000) and ledger.privacy_charge(sub.model_id) == 1_250_000
    free = ledger.submit(h0, 0, digest("m2"), "vault://m2", digest("m2/meta"))  # trained without DP: no charge
    assert not free.tx.has("PrivacySpent") and ledger.privacy_charge(free.model_id) == 0
    capped.open(sub.model_id, ok=False)  # rejected: the privacy is spent all the same
    second = capped.submit(h0, "m3", charge=1_000_000)
    assert spent(capped, h0) == (2_250_000, 2_250_000) and ledger.privacy_charge(second) == 1_000_000
    assert spent(capped, h1) == (0, 0) and ledger.privacy_spent(capped.spare[0].address) == 0


def test_a_charge_past_the_cap_is_refused_and_changes_nothing(capped: Coalition) -> None:
    ledger, h0 = capped.ledger, capped.hospitals[0]
    capped.submit(h0, "m1", charge=2_250_000)
    count = ledger.model_count()
    over = refusal(lambda: capped.submit(h0, "m2", charge=800_000), capped)
    assert (over.error, over.error_args) == (
        "OverBudget",
        {"member": h0.address, "spent": 2_250_000, "charge": 800_000, "cap": CAP},
    )
    assert f"{h0.address} has spent epsilon 2.25 of its privacy budget (cap 3); a charge of 0.8 would exceed" in str(
        over
    )
    assert spent(capped, h0) == (2_250_000, 2_250_000) and ledger.model_count() == count
    assert ledger.model_id_of(digest("m2")) is None  # the candidate was not recorded either
    capped.submit(h0, "m2", charge=750_000)  # up to the cap exactly
    assert spent(capped, h0) == (CAP, CAP)
    assert refusal(lambda: capped.submit(h0, "m3", charge=1), capped).error == "OverBudget"
    capped.submit(capped.hospitals[1], "m3", charge=CAP)  # every member has its own budget


def test_the_cap_is_set_by_governance_and_spending_never_decreases(capped: Coalition) -> None:
    ledger, h0 = capped.ledger, capped.hospitals[0]
    capped.submit(h0, "m1", charge=2_000_000)
    capped.govern(SetParameters(PARAMETERS.replace(epsilon_cap=1_000_000)))  # below what h0 has spent
    assert ledger.parameters().epsilon_cap == 1_000_000 and spent(capped, h0) == (2_000_000, 2_000_000)
    lowered = refusal(lambda: capped.submit(h0, "m2", charge=1), capped)
    assert lowered.error_args == {"member": h0.address, "spent": 2_000_000, "charge": 1, "cap": 1_000_000}
    capped.submit(h0, "m2")  # nothing spent, nothing charged
    capped.govern(Remove(h0.address))
    assert spent(capped, h0) == (2_000_000, 2_000_000)
    capped.govern(Admit(h0.address, VALIDATING, digest("key/again"), "hospital-0 again"))
    assert spent(capped, h0) == (2_000_000, 2_000_000)  # re-admission starts from what it had spent
    capped.govern(SetParameters(PARAMETERS.replace(epsilon_cap=0)))  # no cap: charges are only counted
    capped.submit(h0, "m3", charge=5_000_000)
    assert spent(capped, h0) == (7_000_000, 7_000_000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_no_cap_the_counter_still_never_wraps(backend: str) -> None:
    co = found(backend)
    h0 = co.hospitals[0]
    co.submit(h0, "m1", charge=2**64 - 2)
    wrap = refusal(lambda: co.submit(h0, "m2", charge=2), co)
    assert wrap.error_args == {"member": h0.address, "spent": 2**64 - 2, "charge": 2, "cap": 0}
    assert "(no cap, but a uint64 counter)" in str(wrap)
    co.submit(h0, "m2", charge=1)
    assert co.ledger.privacy_spent(h0.address) == 2**64 - 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("charge", [-1, 2**64, 1.5, True])
def test_a_charge_is_epsilon_in_millionths(backend: str, charge: Any) -> None:
    co = found(backend)
    with pytest.raises(ConfigError, match="epsilon in millionths"):
        co.submit(co.hospitals[0], "m1", charge=charge)
    assert co.ledger.model_count() == 1


@pytest.mark.parametrize("cap", [-1, 2**64, 2.5])
def test_a_cap_is_epsilon_in_millionths(cap: Any) -> None:
    with pytest.raises(ConfigError, match="epsilon_cap must be epsilon in millionths"):
        PARAMETERS.replace(epsilon_cap=cap)


# ---- exports ----------------------------------------------------------------------------------------------


def committed(co: Coalition, label: str) -> int:
    """A candidate of hospital 0 on the head, committed by two approvals."""
    model_id = co.submit(co.hospitals[0], label)
    co.open(model_id)
    for v in co.voters(model_id)[:2]:
        co.vote(v, model_id, True)
    return model_id


def test_an_export_of_a_committed_model_is_recorded_and_read_back(co: Coalition) -> None:
    ledger, (h0, h1, *_) = co.ledger, co.hospitals
    model = committed(co, "m1")
    assert ledger.exports() == []
    first_id, first = ledger.record_export(h1, model, digest("fingerprint/1"), digest("key/1"))
    first_time = ledger.chain.timestamp()
    assert first_id == 0 and [e.name for e in first.events] == ["Exported"]
    assert first.events[0].args == {
        "exportId": 0,
        "modelId": model,
        "member": h1.address,
        "fingerprint": digest("fingerprint/1"),
        "keyBlob": digest("key/1"),
    }
    co.advance(60)
    second_id, second = ledger.record_export(h0, 0, digest("fingerprint/2"), digest("key/2"))  # the genesis
    assert second_id == 1
    assert ledger.exports() == [
        ExportRecord(0, model, h1.address, digest("fingerprint/1"), digest("key/1"), first.block_number, first_time),
        ExportRecord(1, 0, h0.address, digest("fingerprint/2"), digest("key/2"), second.block_number,
                     ledger.chain.timestamp()),
    ]  # fmt: skip
    assert ledger.exports()[1].timestamp >= first_time + 60
    again, _ = ledger.record_export(h1, model, digest("fingerprint/3"), digest("key/3"))  # a model goes out often
    assert again == 2 and [e.model_id for e in ledger.exports()] == [model, 0, model]


def test_an_export_is_refused_by_name_and_records_nothing(co: Coalition) -> None:
    ledger, (h0, h1, h2, h3), stranger = co.ledger, co.hospitals, co.spare[0]
    model, pending = committed(co, "m1"), co.submit(h0, "m2")
    rejected = co.submit(h1, "m3")
    co.open(rejected, ok=False)
    co.govern(SetRoles(h3.address, Role.VALIDATOR))  # active, but without the member role
    fp, key, zero = digest("fingerprint"), digest("key"), b"\0" * 32
    cases: list[tuple[LocalAccount, int, bytes, bytes, str, dict[str, Any]]] = [
        (stranger, model, fp, key, "NotMember", {"account": stranger.address}),
        (h3, model, fp, key, "NotMember", {"account": h3.address}),
        (stranger, 99, fp, key, "NotMember", {"account": stranger.address}),  # who first, as `submit`
        (h2, 99, fp, key, "UnknownModel", {"id": 99}),
        (h2, pending, fp, key, "NotCommitted", {"id": pending, "state": "submitted"}),
        (h2, rejected, fp, key, "NotCommitted", {"id": rejected, "state": "rejected"}),
        (h2, pending, zero, key, "NotCommitted", {"id": pending, "state": "submitted"}),  # the state before the hashes
        (h2, model, zero, key, "ZeroHash", {}),
        (h2, model, fp, zero, "ZeroHash", {}),
    ]
    for member, model_id, fingerprint, key_blob, error, args in cases:
        refused = refusal(lambda: ledger.record_export(member, model_id, fingerprint, key_blob), co)  # noqa: B023
        assert (refused.error, refused.error_args) == (error, args), (member.address, model_id)
    not_committed = refusal(lambda: ledger.record_export(h2, rejected, fp, key), co)
    assert str(not_committed) == (
        f"record the export of model {rejected} refused (NotCommitted): model {rejected} is rejected, not "
        "committed: only a committed model (the head or one of its lineage) may be exported"
    )
    with pytest.raises(ConfigError, match="fingerprint must be 32 bytes"):
        ledger.record_export(h2, model, b"short", key)
    assert ledger.exports() == [] and not any(e.name == "Exported" for e in ledger.events())
    assert ledger.record_export(h2, model, fp, key)[0] == 0  # the refusals used up no id


# ---- history ----------------------------------------------------------------------------------------------


def play(co: Coalition) -> None:
    """A history with every outcome: committed, rejected twice, stale, expired, reassigned, committed by signed
    votes, a new acceptance policy from model 2 on, and governance: a rejected proposal, an expired one, an
    admission, a supervisor rotation and a role change."""
    h, keeper = co.hospitals, co.spare[0]
    committed = co.submit(h[0], "committed", charge=1_500_000)
    co.open(committed)
    for v in co.voters(committed)[:2]:
        co.vote(v, committed, True)
    co.govern(SetParameters(PARAMETERS.replace(policy_hash=digest("policy/2"), epsilon_cap=4_000_000)))
    co.open(co.submit(h[1], "broken", charge=700_000), ok=False)
    voted_down = co.submit(h[2], "voted-down")
    co.open(voted_down)
    for v in co.voters(voted_down)[:2]:
        co.vote(v, voted_down, False)
    sibling, doomed = co.submit(h[3], "sibling"), co.submit(h[0], "doomed", charge=2_000_000)
    co.advance(TIMEOUT + 1)
    co.ledger.reassign_general(keeper, sibling)
    co.open(sibling)
    for v in co.voters(sibling)[:2]:
        co.vote(v, sibling, True)
    co.ledger.mark_stale(keeper, doomed)
    expiring = co.submit(h[1], "expiring", charge=250_000)
    co.advance(TIMEOUT + 1)
    co.ledger.expire(keeper, expiring)
    refused = co.ledger.propose(h[1], Remove(h[0].address)).id
    co.ledger.ballot(h[0], refused, False)
    co.ledger.ballot(h[2], refused, False)
    forgotten = co.ledger.propose(h[2], Admit(co.spare[1].address, Role.AUDITOR)).id
    co.ledger.ballot(h[3], forgotten, True)
    co.advance(PROPOSAL_TIMEOUT + 1)
    co.govern(Admit(co.spare[1].address, VALIDATING, digest("key/late"), "latecomer"))
    co.govern(RotateSupervisor(ZERO_ADDRESS, h[1].address))
    decided = co.submit(h[2], "decided")
    co.open(decided)
    co.ledger.decide(keeper, decided, [co.signed(v, decided, True) for v in co.voters(decided)[:3]])
    voted_down_signed = co.submit(h[1], "voted-down-signed")
    co.open(voted_down_signed)
    co.ledger.decide(
        keeper, voted_down_signed, [co.signed(v, voted_down_signed, False) for v in co.voters(voted_down_signed)[:2]]
    )
    co.govern(SetRoles(h[3].address, Role.MEMBER))
    co.ledger.record_export(h[2], decided, digest("fingerprint/decided"), digest("key/decided"))
    co.ledger.record_export(co.spare[1], 0, digest("fingerprint/genesis"), digest("key/genesis"))


def test_history_rebuilt_from_events_matches_the_views(co: Coalition) -> None:
    play(co)
    history, ledger = rebuild(co.ledger.events()), co.ledger
    assert history.head == ledger.head() == 7 and history.lineage() == [0, 1, 4, 7]
    for mid in range(ledger.model_count()):
        view, past = ledger.get_model(mid), history.candidates[mid]
        assert (past.state, past.approvals, past.rejections, past.general, past.model_hash, past.uri) == (
            view.state,
            view.approvals,
            view.rejections,
            view.general,
            view.model_hash,
            view.uri,
        ), mid
    assert len(history.candidates[4].generals) == 2
    assert [history.candidates[i].reject_reason for i in (2, 3)] == [RejectReason.INTEGRITY, RejectReason.VOTES]
    assert history.candidates[5].state is ModelState.STALE and history.candidates[6].state is ModelState.EXPIRED
    assert history.candidates[3].votes[0].score_local == 0.8
    assert history.name_of(co.hospitals[0].address) == "hospital-0"
    assert [(p.hash, p.from_model) for p in history.policies] == [(digest("policy"), 0), (digest("policy/2"), 2)]
    assert history.policy_hash == ledger.policy_hash() == digest("policy/2")
    exported = json.loads(json.dumps(to_json(history)))
    assert exported["policy_hash"] == "0x" + digest("policy/2").hex()
    assert [m["state"] for m in exported["models"]][1] == "committed"
    assert {m.address: (m.roles, m.active, m.name) for m in ledger.members()} == {
        a: (m.roles, m.active, m.name) for a, m in history.members.items()
    }
    assert ledger.get_member(co.spare[0].address) is None
    h0, h1 = co.hospitals[0].address, co.hospitals[1].address
    assert [(c.model_id, c.member, c.charge, c.spent, c.cap) for c in history.charges] == [
        (1, h0, 1_500_000, 1_500_000, 0),  # before the cap was set
        (2, h1, 700_000, 700_000, 4_000_000),  # rejected by its general, charged all the same
        (5, h0, 2_000_000, 3_500_000, 4_000_000),  # gone stale, charged all the same
        (6, h1, 250_000, 950_000, 4_000_000),  # expired
    ]
    assert spent_by_member(history) == {h0: 3_500_000, h1: 950_000}
    assert {m.address: m.epsilon_spent for m in ledger.members()} == {
        m.address: spent_by_member(history).get(m.address, 0) for m in ledger.members()
    }
    assert {a: ledger.privacy_spent(a) for a in history.members} == {
        a: spent_by_member(history).get(a, 0) for a in history.members
    }
    assert [ledger.privacy_charge(i) for i in range(ledger.model_count())] == [0, 1_500_000, 700_000, 0, 0, 2_000_000,
                                                                                250_000, 0, 0]  # fmt: skip
    assert history.epsilon_cap == ledger.parameters().epsilon_cap == 4_000_000
    assert exported["privacy"]["spent"][h0] == {"units": 3_500_000, "epsilon": 3.5}
    assert [(e.id, e.model_id, e.member, e.fingerprint, e.key_blob, e.block) for e in history.exports] == [
        (r.id, r.model_id, r.member, r.fingerprint, r.key_blob, r.block) for r in ledger.exports()
    ]
    assert [(e.model_id, e.member) for e in history.exports] == [(7, co.hospitals[2].address), (0, co.spare[1].address)]
    assert exported["exports"][1] == {
        "id": 1,
        "model_id": 0,
        "member": co.spare[1].address,
        "fingerprint": "0x" + digest("fingerprint/genesis").hex(),
        "key_blob": "0x" + digest("key/genesis").hex(),
        "block": history.exports[1].block,
    }


def comparable(co: Coalition) -> dict[str, Any]:
    """The history as JSON, without what may differ between backends: who was drawn, block numbers, deadlines."""
    exported = to_json(rebuild(co.ledger.events()))
    for model in exported["models"]:
        del model["generals"], model["submitted_block"]
        for vote in model["votes"]:
            del vote["block"]
    for proposal in exported["proposals"]:
        del proposal["deadline"]
    for export in exported["exports"]:
        del export["block"]
    return exported


def test_both_backends_write_the_same_history() -> None:
    contract, memory = found("contract"), found("memory")
    for co in (contract, memory):
        play(co)
    assert comparable(memory) == comparable(contract)
    assert portable(memory.ledger.events()) == portable(contract.ledger.events())
    assert [p.__dict__ | {"deadline": 0, "ballots": 0} for p in memory.ledger.proposals()] == [
        p.__dict__ | {"deadline": 0, "ballots": 0} for p in contract.ledger.proposals()
    ]


DRAWN = {"general", "previousGeneral", "generalDeadline", "votingDeadline", "deadline"}
"""What differs between backends: who is drawn general, and deadlines (the two clocks start apart)."""


def portable(events: list[LedgerEvent]) -> list[tuple[str, dict[str, Any]]]:
    """The events in order, by name and arguments, without what is drawn or timed."""
    return [(e.name, {k: v for k, v in e.args.items() if k not in DRAWN}) for e in events]
