"""Every transition and every revert of Coalition.sol (v2), on the embedded chain.

A refused call is checked three ways: the custom error (and its arguments), nothing changed on chain (state,
head, proposals, members, events), and no transaction sent (the client simulates first; `refused`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, ContractRevert
from tclearn.ledger.artifact import load_artifact
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import (
    PARAMETERS_ABI,
    Admit,
    Parameters,
    ProposalState,
    Remove,
    RotateSupervisor,
    SetParameters,
    SetRoles,
)
from tclearn.ledger.ledger import ZERO_ADDRESS, Predecessor, TxResult
from tclearn.ledger.sending import Sender, send
from tclearn.ledger.votes import Domain, SignedVote, sign_vote
from tclearn.protocol import to_fixed
from tclearn.types import ModelState, RejectReason, Role, Variant
from tests.conftest import Coalition, deploy_coalition

H = os.urandom
VALIDATING = Role.MEMBER | Role.VALIDATOR
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def state(co: Coalition) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was."""
    c = co.client
    models = [c.get_model(i, with_uri=False) for i in range(c.model_count())]
    return (
        c.head(),
        models,
        c.proposals(),
        c.members(),
        c.parameters(),
        c.validator_count(),
        co.chain.latest_block(),
        c.events(),
    )


@contextmanager
def refused(error: str, co: Coalition, sender: str, **args: Any) -> Iterator[None]:
    """Expects the contract to refuse with `error` (and `args`), having changed nothing and sent no transaction."""
    before, nonce = state(co), co.chain.w3.eth.get_transaction_count(to_checksum_address(sender))
    with pytest.raises(ContractRevert) as info:
        yield
    assert info.value.error == error, str(info.value)
    assert error in str(info.value)
    assert {k: info.value.error_args.get(k) for k in args} == args, str(info.value)
    assert co.chain.w3.eth.get_transaction_count(to_checksum_address(sender)) == nonce, (
        "a transaction known to revert was sent"
    )
    assert state(co) == before, "a refused call changed the coalition"


def raw(co: Coalition, account: LocalAccount, fn_name: str, *args: Any) -> TxResult:
    """Calls the contract function as given, past the client's checks and ordering (still simulated first)."""
    fn = getattr(co.client.contract.functions, fn_name)(*args)
    return co.client._result(send(co.chain, Sender(account), fn, fn_name, co.client.artifact, timeout=30))


def deploy_raw(chain: Chain, *, variant: int = 2, genesis: bytes | None = None, **overrides: Any) -> None:
    """Deploys with the constructor's arguments as given (`parameters` a tuple, `founders` tuples)."""
    artifact = load_artifact()
    founders = [(a.address, int(VALIDATING), b"\0" * 32, f"h{i}") for i, a in enumerate(chain.dev_keys[1:3])]
    args = {
        "parameters": (H(32), b"\0" * 32, 60, 60, 60, 2, 0),
        "founders": founders,
        "predecessor": (0, ZERO_ADDRESS, 0),
        **overrides,
    }
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    fn = factory.constructor(variant, genesis or H(32), "g", args["parameters"], args["founders"], args["predecessor"])
    send(chain, Sender(chain.dev_keys[0]), fn, "deploy", artifact, timeout=30)


def vote_by(co: Coalition, voter: LocalAccount, model_id: int, approve: bool = True, **kw: Any) -> SignedVote:
    """`voter`'s signed vote on `model_id` (for this coalition's domain unless `domain` is given)."""
    domain = kw.pop("domain", co.client.domain)
    model_hash = kw.pop("model_hash", co.client.get_model(model_id, with_uri=False).model_hash)
    return sign_vote(voter, domain, model_id, model_hash, approve, kw.get("g", 0.9), kw.get("l", 0.8), H(32))


def opened(co: Coalition, proposer: int = 0) -> tuple[int, list[LocalAccount]]:
    """A candidate of hospital `proposer`, opened; its voters in ascending address order."""
    mid = co.submit(co.hospitals[proposer])
    co.open(mid)
    return mid, sorted(co.voters(mid), key=lambda a: int(a.address, 16))


def calls(votes: Sequence[SignedVote]) -> list[tuple[Any, ...]]:
    return [v.as_call() for v in votes]


# ---- deployment ------------------------------------------------------------------------------------------


def test_genesis_is_committed_head_and_logged(coalition: Coalition) -> None:
    c = coalition.client
    genesis = c.get_model(0)
    assert (c.head(), c.model_count(), genesis.state) == (0, 1, ModelState.COMMITTED)
    assert genesis.uri == "vault://genesis" and genesis.metadata_hash == b"\0" * 32
    names = [e.name for e in c.events() if e.args.get("id", 0) == 0 and e.name in ("Submitted", "Committed")]
    assert names == ["Submitted", "Committed"]
    assert c.variant() == Variant.B and c.timeouts() == (600, 600)
    assert c.get_model(0, with_uri=False).metadata_hash is None  # the metadata hash lives in Submitted only


def test_founding_emits_the_coalition_whole_and_links_the_predecessor(chain: Chain) -> None:
    deployer, a, b = chain.dev_keys[:3]
    link = Predecessor(7, to_checksum_address("0x" + "ab" * 20), 42)
    parameters = Parameters(H(32), H(32), 30, 40, 50, 1, 6_000_000)
    founders = [Admit(a.address, VALIDATING, b"\x01" * 32, "A"), Admit(b.address, Role.MEMBER, b"\x02" * 32, "B")]
    client, tx = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.A,
        genesis_hash=b"\x09" * 32,
        genesis_uri="g",
        parameters=parameters,
        founders=founders,
        predecessor=link,
    )
    names = [e.name for e in tx.events]
    assert names == [
        *("GlobalTestSetChanged", "PolicyChanged", "ParametersChanged"),
        *("Founded", "Submitted", "Committed"),
        *("MemberRegistered", "MemberRegistered"),
    ]
    founded = tx.event("Founded")
    assert founded is not None and founded.args == {
        "predecessorChainId": 7,
        "predecessor": link.coalition,
        "predecessorHeadId": 42,
        "genesisHash": b"\x09" * 32,
    }
    assert client.parameters() == parameters and client.validator_count() == 1
    changed = tx.event("ParametersChanged")
    assert changed is not None and changed.args["epsilonCap"] == 6_000_000
    assert client.contract.functions.privacyBudget(a.address).call() == [0, 6_000_000]
    members = client.members()
    assert [(m.address, m.roles, m.name, m.member_since, m.active) for m in members] == [
        (a.address, VALIDATING, "A", 0, True),
        (b.address, Role.MEMBER, "B", 0, True),
    ]
    assert client.get_member(deployer.address) is None  # deploying makes nobody an admin, nor a member
    assert client.proposal_count() == 0


@pytest.mark.parametrize(
    ("overrides", "error", "args"),
    [
        ({"variant": 0}, "InvalidVariant", {"variant": 0}),
        ({"variant": 4}, "InvalidVariant", {"variant": 4}),
        ({"genesis": b"\0" * 32}, "ZeroHash", {}),
        ({"parameters": (b"\0" * 32, b"\0" * 32, 60, 60, 60, 2, 0)}, "ZeroHash", {}),
        ({"parameters": (H(32), b"\0" * 32, 0, 60, 60, 2, 0)}, "InvalidTimeout", {}),
        ({"parameters": (H(32), b"\0" * 32, 60, 60, 0, 2, 0)}, "InvalidTimeout", {}),
        ({"founders": []}, "NoFounders", {}),
        ({"parameters": (H(32), b"\0" * 32, 60, 60, 60, 3, 0)}, "TooFewValidators", {"remaining": 2, "needed": 3}),
        ({"founders": [(ZERO_ADDRESS, 3, b"\0" * 32, "")]}, "ZeroAddress", {}),
        ({"founders": [("0x" + "11" * 20, 16, b"\0" * 32, "")]}, "InvalidRoles", {"roles": 16}),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, dict) else None,
)
def test_bad_deployment_is_refused(chain: Chain, overrides: dict[str, Any], error: str, args: dict[str, Any]) -> None:
    deployer = chain.dev_keys[0]
    nonce, block = chain.w3.eth.get_transaction_count(deployer.address), chain.latest_block()
    with pytest.raises(ContractRevert) as info:
        deploy_raw(chain, **overrides)
    assert info.value.error == error, str(info.value)
    assert {k: info.value.error_args.get(k) for k in args} == args
    assert (chain.w3.eth.get_transaction_count(deployer.address), chain.latest_block()) == (nonce, block)


def test_the_client_refuses_a_coalition_without_founders_before_sending(chain: Chain) -> None:
    deployer = chain.dev_keys[0]
    with pytest.raises(ConfigError, match="at least one founder"):
        LedgerClient.deploy(
            chain,
            deployer,
            variant=Variant.B,
            genesis_hash=H(32),
            genesis_uri="g",
            parameters=Parameters(H(32)),
            founders=[],
        )
    assert chain.w3.eth.get_transaction_count(deployer.address) == 0


# ---- governance: each action's lifecycle -----------------------------------------------------------------


def test_a_proposal_is_carried_by_two_thirds_of_the_active_members(coalition: Coalition) -> None:
    c, (h0, h1, h2, h3), newcomer = coalition.client, coalition.hospitals, coalition.spare[0]
    action = Admit(newcomer.address, VALIDATING, b"\x07" * 32, "St Luke")
    proposal = c.propose(h1, action)
    assert (proposal.id, proposal.action, proposal.state, proposal.proposer) == (
        0,
        action,
        ProposalState.PENDING,
        h1.address,
    )
    assert (proposal.eligible, proposal.approvals, proposal.rejections, proposal.needed) == (4, 1, 0, 3)
    assert [(b.member, b.approve) for b in proposal.ballots] == [(h1.address, True)]  # its proposer's approval
    assert c.has_ballot(0, h1.address) and not c.has_ballot(0, h0.address)
    with refused("ProposalNotApproved", coalition, coalition.deployer.address, proposal=0, approvals=1, needed=3):
        c.execute(coalition.deployer, 0)
    c.ballot(h0, 0, True)
    c.ballot(h3, 0, False)
    with refused("ProposalNotApproved", coalition, coalition.deployer.address, approvals=2, needed=3):
        c.execute(coalition.deployer, 0)
    c.ballot(h2, 0, True)
    tx = c.execute(coalition.spare[1], 0)  # anyone executes
    assert [e.name for e in tx.events] == ["MemberRegistered", "ProposalExecuted"]
    assert tx.event("ProposalExecuted").args == {"proposal": 0, "kind": 1}  # type: ignore[union-attr]
    done = c.proposal(0)
    assert (done.state, done.approvals, done.rejections) == (ProposalState.EXECUTED, 3, 1)
    assert [(b.member, b.approve) for b in done.ballots] == [
        (h1.address, True),
        (h0.address, True),
        (h3.address, False),
        (h2.address, True),
    ]
    member = c.get_member(newcomer.address)
    assert member is not None and (member.roles, member.name, member.encryption_key) == (
        VALIDATING,
        "St Luke",
        b"\x07" * 32,
    )
    assert member.member_since == 1 and c.validator_count() == 5  # it ballots from the next proposal on
    with refused("ProposalNotPending", coalition, coalition.deployer.address, proposal=0, state="executed"):
        c.execute(coalition.deployer, 0)
    with refused("ProposalNotPending", coalition, h3.address, state="executed"):
        c.ballot(h3, 0, True)


def test_set_roles_changes_the_validators(coalition: Coalition) -> None:
    c, h3 = coalition.client, coalition.hospitals[3]
    pid = coalition.approve(SetRoles(h3.address, Role.MEMBER | Role.AUDITOR))
    tx = c.execute(coalition.deployer, pid)
    changed = tx.event("RolesChanged")
    assert changed is not None and changed.args == {"account": h3.address, "roles": 5, "active": True}
    assert c.get_member(h3.address).roles == Role.MEMBER | Role.AUDITOR  # type: ignore[union-attr]
    assert c.validator_count() == 3
    coalition.govern(SetRoles(h3.address, VALIDATING))
    assert c.validator_count() == 4
    mid = coalition.submit(coalition.hospitals[0])
    assert c.get_model(mid).eligible == 3  # the re-made validator counts for new candidates


def test_removal_and_readmission(coalition: Coalition) -> None:
    c, h3 = coalition.client, coalition.hospitals[3]
    gone_before = c.get_member(h3.address)
    pid = coalition.govern(Remove(h3.address))
    gone = c.get_member(h3.address)
    assert gone is not None and not gone.active and gone.roles == Role(0) and c.validator_count() == 3
    assert c.proposal(pid).action == Remove(h3.address)
    with refused("NotMember", coalition, h3.address):
        c.propose(h3, Remove(coalition.hospitals[0].address))
    with refused("NotMember", coalition, h3.address):
        c.set_encryption_key(h3, b"\x01" * 32)
    assert c.propose(coalition.hospitals[0], SetRoles(coalition.hospitals[1].address, Role.MEMBER)).eligible == 3
    coalition.govern(Admit(h3.address, Role.AUDITOR, b"\x09" * 32, "back"))
    back = c.get_member(h3.address)
    assert back is not None and back.active and back.roles == Role.AUDITOR and back.index == gone_before.index  # type: ignore[union-attr]
    assert len(c.members()) == 4


def test_set_parameters_replaces_every_parameter(coalition: Coalition) -> None:
    c = coalition.client
    new = Parameters(b"\x0a" * 32, b"\x0b" * 32, 11, 22, 33, 3, 1_500_000)
    pid = coalition.approve(SetParameters(new))
    tx = c.execute(coalition.deployer, pid)
    names = [e.name for e in tx.events]
    assert names == ["GlobalTestSetChanged", "PolicyChanged", "ParametersChanged", "ProposalExecuted"]
    assert tx.event("ParametersChanged").args == {  # type: ignore[union-attr]
        "generalTimeout": 11,
        "votingTimeout": 22,
        "proposalTimeout": 33,
        "minValidators": 3,
        "epsilonCap": 1_500_000,
    }
    assert c.parameters() == new and c.policy_hash() == b"\x0a" * 32 and c.timeouts() == (11, 22)
    assert (
        c.propose(coalition.hospitals[0], Remove(coalition.hospitals[3].address)).deadline == c.chain.timestamp() + 33
    )


def test_a_charge_past_the_cap_sends_no_transaction(coalition: Coalition) -> None:
    c, h0 = coalition.client, coalition.hospitals[0]
    coalition.govern(SetParameters(c.parameters().replace(epsilon_cap=1_000_000)))
    c.submit(h0, 0, H(32), "u", H(32), 600_000)
    with refused("OverBudget", coalition, h0.address, spent=600_000, charge=500_000, cap=1_000_000):
        c.submit(h0, 0, H(32), "u", H(32), 500_000)
    assert c.contract.functions.privacyBudget(h0.address).call() == [600_000, 1_000_000]


def test_exports_are_counted_in_the_governance_slot_and_a_refused_one_sends_nothing(coalition: Coalition) -> None:
    c, h0, stranger = coalition.client, coalition.hospitals[0], coalition.spare[0]
    pending = coalition.submit(h0)
    with refused("NotCommitted", coalition, h0.address, id=pending, state="submitted"):
        c.record_export(h0, pending, H(32), H(32))
    with refused("NotMember", coalition, stranger.address, account=stranger.address):
        c.record_export(stranger, 0, H(32), H(32))
    slot3 = bytes(coalition.chain.w3.eth.get_storage_at(c.address, 3))
    assert c.contract.functions.exportCount().call() == 0 and slot3[:8] == bytes(8)
    for expected in range(3):
        assert c.record_export(h0, 0, H(32), H(32))[0] == expected
    slot3 = bytes(coalition.chain.w3.eth.get_storage_at(c.address, 3))
    assert c.contract.functions.exportCount().call() == 3 == int.from_bytes(slot3[:8], "big")  # the top 8 bytes
    assert int.from_bytes(slot3[-8:], "big") == c.parameters().proposal_timeout  # still beside the counters


def test_the_supervisor_role_is_rotated(coalition: Coalition) -> None:
    c, (h0, h1, h2, _), lone = coalition.client, coalition.hospitals, coalition.spare[0]
    tx = c.execute(coalition.deployer, coalition.approve(RotateSupervisor(ZERO_ADDRESS, h0.address)))
    assert tx.event("SupervisorRotated").args == {"from": ZERO_ADDRESS, "to": h0.address}  # type: ignore[union-attr]
    assert Role.SUPERVISOR in c.get_member(h0.address).roles  # type: ignore[union-attr]
    coalition.govern(RotateSupervisor(h0.address, h1.address))
    assert c.get_member(h0.address).roles == VALIDATING  # type: ignore[union-attr]
    assert c.get_member(h1.address).roles == VALIDATING | Role.SUPERVISOR  # type: ignore[union-attr]
    with refused("NotSupervisor", coalition, h2.address, account=h0.address):
        c.propose(h2, RotateSupervisor(h0.address, h2.address))
    coalition.govern(Admit(lone.address, Role.SUPERVISOR, name="supervisor only"))
    coalition.govern(RotateSupervisor(lone.address, h2.address))
    gone = c.get_member(lone.address)
    assert gone is not None and not gone.active  # a member that only supervised leaves with the role
    assert c.get_member(h2.address).roles == VALIDATING | Role.SUPERVISOR  # type: ignore[union-attr]
    assert c.validator_count() == 4


def test_rotating_the_supervisor_role_to_its_holder_is_refused(coalition: Coalition) -> None:
    """A supervisor-only member handing the role to itself would be deactivated, then given the role again while
    inactive (storage and logs disagreeing): refused when proposed, and again when executed."""
    c, lone = coalition.client, coalition.spare[0]
    coalition.govern(Admit(lone.address, Role.SUPERVISOR))
    with refused("InvalidAction", coalition, coalition.hospitals[0].address, kind=5):
        c.propose(coalition.hospitals[0], RotateSupervisor(lone.address, lone.address))
    member = c.get_member(lone.address)
    assert member is not None and (member.active, int(member.roles)) == (True, int(Role.SUPERVISOR))


# ---- governance: refusals ----------------------------------------------------------------------------------


def test_a_rejected_proposal_cannot_be_executed(coalition: Coalition) -> None:
    c, (h0, h1, h2, _) = coalition.client, coalition.hospitals
    pid = c.propose(h0, Remove(h2.address)).id
    assert c.ballot(h1, pid, False).event("ProposalRejected") is None  # 1 * 3 > 4 is false
    tx = c.ballot(h2, pid, False)
    assert tx.event("ProposalRejected") is not None
    assert c.proposal(pid).state is ProposalState.REJECTED
    with refused("ProposalNotPending", coalition, h0.address, proposal=pid, state="rejected"):
        c.execute(h0, pid)


def test_a_proposal_expires_at_its_deadline(coalition: Coalition) -> None:
    c = coalition.client
    pid = coalition.approve(Remove(coalition.hospitals[3].address))
    deadline = c.proposal(pid).deadline
    coalition.chain.advance_time(deadline - coalition.chain.timestamp() + 1)
    assert coalition.chain.tester is not None
    coalition.chain.tester.mine_blocks(1)  # the embedded chain's clock moves with its next block
    assert c.proposal(pid).state is ProposalState.EXPIRED
    with refused("ProposalExpired", coalition, coalition.deployer.address, proposal=pid, deadline=deadline):
        c.execute(coalition.deployer, pid)
    with refused("ProposalExpired", coalition, coalition.hospitals[3].address):
        c.ballot(coalition.hospitals[3], pid, False)


def test_execution_with_another_action_is_refused(coalition: Coalition) -> None:
    pid = coalition.approve(Remove(coalition.hospitals[3].address))
    other = Remove(coalition.hospitals[2].address).encode()
    with refused("ActionMismatch", coalition, coalition.deployer.address, proposal=pid):
        raw(coalition, coalition.deployer, "execute", pid, other)
    assert coalition.client.get_member(coalition.hospitals[2].address).active  # type: ignore[union-attr]


def test_ballots_once_and_only_by_members_of_the_time(coalition: Coalition) -> None:
    c, (h0, h1, _, h3), late, stranger = coalition.client, coalition.hospitals, coalition.spare[0], coalition.spare[1]
    pid = c.propose(h0, SetRoles(h3.address, Role.MEMBER)).id
    with refused("AlreadyBalloted", coalition, h0.address, member=h0.address, proposal=pid):
        c.ballot(h0, pid, True)  # its proposal was its approval
    c.ballot(h1, pid, False)
    with refused("AlreadyBalloted", coalition, h1.address):
        c.ballot(h1, pid, True)
    coalition.govern(Admit(late.address, VALIDATING))
    with refused("NotBallotEligible", coalition, late.address, member=late.address, proposal=pid):
        c.ballot(late, pid, True)  # admitted after the proposal was made
    with refused("NotBallotEligible", coalition, stranger.address):
        c.ballot(stranger, pid, True)
    with refused("UnknownProposal", coalition, h1.address, proposal=99):
        c.ballot(h1, 99, True)
    later = c.propose(h0, SetRoles(h3.address, Role.MEMBER)).id
    c.ballot(late, later, True)  # but it may on the proposals made since
    assert c.has_ballot(later, late.address) and not c.has_ballot(pid, late.address)


def test_the_client_executes_an_action_with_the_bytes_it_was_proposed_with(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    data = Remove(h[3].address).encode() + b"\0" * 32  # the contract's decoder ignores trailing bytes
    raw(coalition, h[0], "propose", 3, data)
    for member in h[1:3]:
        c.ballot(member, 0, True)
    assert c.proposal(0).action == Remove(h[3].address) and c.proposal(0).action.encode() != data
    c.execute(coalition.deployer, 0)
    assert c.proposal(0).state is ProposalState.EXECUTED and not c.get_member(h[3].address).active  # type: ignore[union-attr]
    with refused("UnknownProposal", coalition, coalition.deployer.address, proposal=1):
        c.execute(coalition.deployer, 1)


def test_execution_checks_the_coalition_as_it_is_then(coalition: Coalition) -> None:
    c, (h0, h1, h2, _), newcomer = coalition.client, coalition.hospitals, coalition.spare[0]
    coalition.govern(RotateSupervisor(ZERO_ADDRESS, h0.address))
    to_h2 = coalition.approve(RotateSupervisor(h0.address, h2.address))
    coalition.govern(RotateSupervisor(h0.address, h1.address))  # proposed later, executed first
    with refused("NotSupervisor", coalition, coalition.deployer.address, account=h0.address):
        c.execute(coalition.deployer, to_h2)
    first, second = (coalition.approve(Admit(newcomer.address, VALIDATING)) for _ in range(2))
    c.execute(coalition.deployer, second)
    with refused("AlreadyMember", coalition, coalition.deployer.address, account=newcomer.address):
        c.execute(coalition.deployer, first)


@pytest.mark.parametrize("action", ["remove", "set_roles"])
def test_no_change_may_leave_fewer_validators_than_the_floor(chain: Chain, action: str) -> None:
    co = deploy_coalition(chain, validators=2, members=1)  # the floor: 2 validators
    h0 = co.hospitals[0]
    change = Remove(h0.address) if action == "remove" else SetRoles(h0.address, Role.MEMBER)
    pid = co.approve(change, co.hospitals[2])
    with refused("TooFewValidators", co, co.deployer.address, remaining=1, needed=2):
        co.client.execute(co.deployer, pid)
    assert co.client.proposal(pid).state is ProposalState.PENDING  # it may be executed once a validator joins
    co.govern(Admit(co.spare[0].address, VALIDATING))
    co.client.execute(co.deployer, pid)
    assert co.client.validator_count() == 2


STRANGER = "0x" + "11" * 20


def admit_bytes(account: str, roles: int) -> bytes:
    return abi_encode(["address", "uint8", "bytes32", "string"], [account, roles, b"\0" * 32, ""])


def parameters_bytes(policy: bytes, voting_timeout: int) -> bytes:
    return abi_encode([PARAMETERS_ABI], [(policy, b"\0" * 32, 1, voting_timeout, 1, 1, 0)])


@pytest.mark.parametrize(
    ("kind", "action", "error", "args"),
    [
        pytest.param(0, b"", "InvalidAction", {"kind": 0}, id="kind-0"),
        pytest.param(6, b"", "InvalidAction", {"kind": 6}, id="kind-6"),
        pytest.param(1, admit_bytes(ZERO_ADDRESS, 1), "ZeroAddress", {}, id="admit-zero-address"),
        pytest.param(1, admit_bytes(STRANGER, 16), "InvalidRoles", {"roles": 16}, id="admit-bad-roles"),
        pytest.param(2, abi_encode(["address", "uint8"], [STRANGER, 1]), "NotMember", {}, id="roles-of-stranger"),
        pytest.param(3, abi_encode(["address"], [STRANGER]), "NotMember", {}, id="remove-stranger"),
        pytest.param(4, parameters_bytes(b"\0" * 32, 1), "ZeroHash", {}, id="zero-policy"),
        pytest.param(4, parameters_bytes(b"\1" * 32, 0), "InvalidTimeout", {}, id="zero-timeout"),
        pytest.param(
            5, abi_encode(["address", "address"], [ZERO_ADDRESS, STRANGER]), "NotMember", {}, id="rotate-to-stranger"
        ),
    ],
)
def test_a_bad_action_is_refused_when_proposed(
    coalition: Coalition, kind: int, action: bytes, error: str, args: dict[str, Any]
) -> None:
    h0 = coalition.hospitals[0]
    with refused(error, coalition, h0.address, **args):
        raw(coalition, h0, "propose", kind, action)


def test_proposals_by_outsiders_and_of_members_are_refused(coalition: Coalition) -> None:
    c, h0, stranger = coalition.client, coalition.hospitals[0], coalition.spare[0]
    with refused("NotMember", coalition, stranger.address, account=stranger.address):
        c.propose(stranger, Admit(stranger.address, VALIDATING))
    with refused("AlreadyMember", coalition, h0.address, account=coalition.hospitals[1].address):
        c.propose(h0, Admit(coalition.hospitals[1].address, VALIDATING))
    with refused("UnknownProposal", coalition, h0.address):
        raw(coalition, h0, "execute", 5, b"")


# ---- signed votes decided in one transaction -------------------------------------------------------------


def test_decide_commits_with_one_voted_event_per_signature_in_address_order(coalition: Coalition) -> None:
    c = coalition.client
    mid, (v1, v2, _) = opened(coalition)
    votes = [vote_by(coalition, v2, mid, g=0.7, l=0.6), vote_by(coalition, v1, mid, g=0.9, l=0.8)]  # any order
    outcome = c.decide(coalition.spare[0], mid, votes)  # anyone carries them
    assert outcome.state == ModelState.COMMITTED and c.head() == mid
    voted = [e.args for e in outcome.tx.events if e.name == "Voted"]
    by_signer = {v.signer: v for v in votes}
    assert [a["validator"] for a in voted] == [v1.address, v2.address]
    for a in voted:
        v = by_signer[a["validator"]]
        assert a == {
            "id": mid,
            "validator": v.signer,
            "approve": True,
            "scoreGlobal": v.score_global,
            "scoreLocal": v.score_local,
            "evidenceHash": v.evidence_hash,
        }
    assert voted[0]["scoreGlobal"] == to_fixed(0.9)
    assert outcome.tx.event("Committed").args["approvals"] == 2  # type: ignore[union-attr]
    assert not c.has_voted(mid, v1.address) and not c.has_voted(mid, v2.address)  # decide stores no vote bits
    assert c.get_model(mid).approvals == 2


def test_a_mixed_batch_commits_and_a_rejecting_batch_rejects(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=6)
    mid, voters = opened(co)  # eligible 5: 4 approvals commit
    votes = [vote_by(co, v, mid, approve=i != 2) for i, v in enumerate(voters)]
    outcome = co.client.decide(co.spare[0], mid, votes)
    assert outcome.state == ModelState.COMMITTED
    assert outcome.tx.event("Committed").args["approvals"] == 4  # type: ignore[union-attr]
    assert outcome.tx.event("Committed").args["rejections"] == 1  # type: ignore[union-attr]
    assert [e.args["approve"] for e in outcome.tx.events if e.name == "Voted"] == [True, True, False, True, True]
    mid2, voters2 = opened(co, proposer=1)
    outcome = co.client.decide(co.spare[0], mid2, [vote_by(co, v, mid2, approve=False) for v in voters2[:2]])
    assert outcome.state == ModelState.REJECTED and co.client.head() == mid
    assert outcome.tx.event("Rejected").args["reason"] == RejectReason.VOTES  # type: ignore[union-attr]


def test_direct_votes_count_and_block_the_same_validators_signature(coalition: Coalition) -> None:
    c = coalition.client
    mid, (v1, v2, v3) = opened(coalition)
    c.vote(v1, mid, True, 0.9, 0.9, H(32))
    assert c.has_voted(mid, v1.address)
    with refused("AlreadyVoted", coalition, v3.address, validator=v1.address, id=mid):
        c.decide(v3, mid, [vote_by(coalition, v1, mid), vote_by(coalition, v2, mid)])
    outcome = c.decide(v3, mid, [vote_by(coalition, v2, mid)])  # the direct vote and one signature: 2 of 3
    assert outcome.state == ModelState.COMMITTED
    assert c.has_voted(mid, v1.address) and not c.has_voted(mid, v2.address)


def test_decide_on_a_stale_candidate_says_stale(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    first, second = coalition.submit(h[0]), coalition.submit(h[1])
    coalition.open(first)
    coalition.open(second)
    votes = [vote_by(coalition, v, second) for v in coalition.voters(second)[:2]]
    c.decide(coalition.spare[0], first, [vote_by(coalition, v, first) for v in coalition.voters(first)[:2]])
    with pytest.raises(ContractRevert) as info:
        c.decide(coalition.spare[0], second, votes)
    assert info.value.error == "Stale"
    assert c.get_model(second).state == ModelState.STALE and c.head() == first


def with_signature(vote: SignedVote, **changes: Any) -> SignedVote:
    return dataclasses.replace(vote, **changes)


def test_a_forged_or_altered_signature_recovers_a_stranger(coalition: Coalition) -> None:
    mid, (v1, v2, _) = opened(coalition)
    good = vote_by(coalition, v2, mid)
    altered = with_signature(vote_by(coalition, v1, mid), score_global=to_fixed(1.0))  # signed 0.9, claims 1.0
    caller = coalition.spare[0]
    with pytest.raises(ContractRevert) as info:
        coalition.client.decide(caller, mid, [altered, good])
    assert info.value.error == "NotValidator" and info.value.error_args["account"] not in (v1.address, v2.address)
    forger = coalition.spare[1]
    forged = with_signature(vote_by(coalition, forger, mid), signer=v1.address)  # claims to be v1's
    with refused("NotValidator", coalition, caller.address, account=forger.address):
        coalition.client.decide(caller, mid, [forged, good])
    zero = with_signature(good, signature=b"\0" * 64 + bytes([27]))  # recovers nobody
    with refused("BadSignature", coalition, caller.address, index=0):
        coalition.client.decide(caller, mid, [zero])


def test_a_batch_replayed_is_refused(coalition: Coalition) -> None:
    c = coalition.client
    mid, (v1, v2, _) = opened(coalition)
    batch = [vote_by(coalition, v1, mid), vote_by(coalition, v2, mid)]
    c.decide(coalition.spare[0], mid, batch)
    with refused("WrongState", coalition, coalition.spare[0].address, id=mid, state="committed"):
        c.decide(coalition.spare[0], mid, batch)
    nxt, _ = opened(coalition)
    moved = [with_signature(v, candidate=nxt) for v in batch]  # the same signatures on the next candidate
    with refused("NotValidator", coalition, coalition.spare[0].address):
        c.decide(coalition.spare[0], nxt, moved)


def test_a_signature_for_another_chain_or_contract_is_refused(chain: Chain) -> None:
    co, twin = deploy_coalition(chain), deploy_coalition(chain)  # the same founders, the same chain
    model = H(32)
    for one in (co, twin):
        mid = one.client.submit(one.hospitals[0], 0, model, "u", H(32)).model_id
        one.open(mid)
    assert co.client.get_model(1).model_hash == twin.client.get_model(1).model_hash
    voters = sorted(co.voters(1), key=lambda a: int(a.address, 16))[:2]
    for_co = [vote_by(co, v, 1) for v in voters]
    with refused("NotValidator", twin, co.spare[0].address):
        twin.client.decide(co.spare[0], 1, for_co)  # valid on co, replayed on its twin
    other_chain = Domain(chain.chain_id + 1, co.client.address)
    with refused("NotValidator", co, co.spare[0].address):
        co.client.decide(co.spare[0], 1, [vote_by(co, v, 1, domain=other_chain) for v in voters])
    assert co.client.decide(co.spare[0], 1, for_co).state == ModelState.COMMITTED


def test_signers_that_may_not_vote_are_refused(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=4, members=1)
    c, caller = co.client, co.spare[0]
    mid, _ = opened(co)
    v1, v2 = co.hospitals[1:3]
    member_only, stranger, proposer = co.hospitals[4], co.spare[1], co.hospitals[0]
    for signer in (member_only, stranger):
        with refused("NotValidator", co, caller.address, account=signer.address):
            c.decide(caller, mid, [vote_by(co, signer, mid), vote_by(co, v1, mid)])
    with refused("ProposerCannotVote", co, caller.address, proposer=proposer.address, id=mid):
        c.decide(caller, mid, [vote_by(co, proposer, mid), vote_by(co, v1, mid), vote_by(co, v2, mid)])
    late = co.spare[2]
    co.govern(Admit(late.address, VALIDATING))
    with refused("NotEligible", co, caller.address, validator=late.address, id=mid):
        c.decide(caller, mid, [vote_by(co, late, mid), vote_by(co, v1, mid)])


def test_a_batch_must_be_sorted_unique_low_s_and_decisive(coalition: Coalition) -> None:
    c, caller = coalition.client, coalition.spare[0]
    mid, (v1, v2, v3) = opened(coalition)
    a, b = vote_by(coalition, v1, mid), vote_by(coalition, v2, mid)
    with refused("AlreadyVoted", coalition, caller.address, validator=v1.address, id=mid):
        c.decide(caller, mid, [a, vote_by(coalition, v1, mid, approve=False)])
    with refused("UnsortedVotes", coalition, caller.address, index=1):
        raw(coalition, caller, "decide", mid, calls([b, a]))  # past the client's sorting
    v, r, s = b.vrs
    high = with_signature(
        b, signature=r + (CURVE_ORDER - int.from_bytes(s, "big")).to_bytes(32, "big") + bytes([55 - v])
    )
    with refused("BadSignature", coalition, caller.address, index=1):
        c.decide(caller, mid, [a, high])  # the malleable twin of a valid signature
    with refused("NoDecision", coalition, caller.address, id=mid, approvals=1, rejections=0, eligible=3):
        c.decide(caller, mid, [a])
    with refused("NoDecision", coalition, caller.address, approvals=0, rejections=0):
        c.decide(caller, mid, [])
    assert c.decide(caller, mid, [a, b, vote_by(coalition, v3, mid, approve=False)]).state == ModelState.COMMITTED


def test_decide_after_the_voting_deadline_is_refused(coalition: Coalition) -> None:
    mid, (v1, v2, _) = opened(coalition)
    votes = [vote_by(coalition, v1, mid), vote_by(coalition, v2, mid)]
    coalition.chain.advance_time(601)
    with refused("DeadlinePassed", coalition, coalition.spare[0].address, id=mid):
        coalition.client.decide(coalition.spare[0], mid, votes)


# ---- a round ---------------------------------------------------------------------------------------------


def test_submit_draws_a_general_who_is_not_the_proposer(coalition: Coalition) -> None:
    c, proposer = coalition.client, coalition.hospitals[0]
    for _ in range(12):
        s = c.submit(proposer, 0, H(32), "vault://x", H(32))
        assert s.general != proposer.address
        assert s.general in {h.address for h in coalition.hospitals}
        assert s.eligible == 3
        assert c.get_model(s.model_id).state == ModelState.SUBMITTED


def test_member_without_validator_role_leaves_all_validators_eligible(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=3, members=1)
    s = co.client.submit(co.hospitals[3], 0, H(32), "u", H(32))
    assert s.eligible == 3


def test_full_round_commits_at_two_thirds_and_moves_head(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    assert c.get_model(mid).state == ModelState.OPEN
    v1, v2, v3 = coalition.voters(mid)
    assert c.vote(v1, mid, True, 0.81, 0.79, H(32)).state == ModelState.OPEN
    assert c.has_voted(mid, v1.address) and not c.has_voted(mid, v2.address)
    outcome = c.vote(v2, mid, True, 0.8, 0.7, H(32))  # 2 of 3 eligible: 2*3 >= 3*2
    assert outcome.state == ModelState.COMMITTED
    committed = outcome.tx.event("Committed")
    assert committed is not None and committed.args["approvals"] == 2
    assert c.head() == mid
    with refused("WrongState", coalition, v3.address):
        c.vote(v3, mid, True, 0.8, 0.7, H(32))  # the third validator never needed to vote


def test_validators_reject_once_two_thirds_is_out_of_reach(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[1])
    coalition.open(mid)
    v1, v2, _ = coalition.voters(mid)
    assert c.vote(v1, mid, False, 0.1, 0.1, H(32)).state == ModelState.OPEN
    outcome = c.vote(v2, mid, False, 0.1, 0.1, H(32))  # 2*3 > 3
    assert outcome.state == ModelState.REJECTED
    rejected = outcome.tx.event("Rejected")
    assert rejected is not None and rejected.args["reason"] == RejectReason.VOTES
    assert c.head() == 0


def test_general_rejects_a_broken_candidate(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    general = coalition.account(c.get_model(mid).general)
    report = H(32)
    tx = c.open_candidate(general, mid, False, report)
    ev = tx.event("Rejected")
    assert ev is not None and ev.args == {"id": mid, "reason": RejectReason.INTEGRITY, "evidenceHash": report}
    assert c.get_model(mid).state == ModelState.REJECTED


def test_round_reverts(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    stranger = coalition.spare[0]
    with refused("NotMember", coalition, stranger.address):
        c.submit(stranger, 0, H(32), "u", H(32))
    with refused("StaleParent", coalition, h[0].address):
        c.submit(h[0], 5, H(32), "u", H(32))
    for model_hash, metadata_hash in ((b"\0" * 32, H(32)), (H(32), b"\0" * 32)):
        with refused("ZeroHash", coalition, h[0].address):
            c.submit(h[0], 0, model_hash, "u", metadata_hash)
    taken = H(32)
    mid = c.submit(h[0], 0, taken, "u", H(32)).model_id
    with refused("DuplicateModel", coalition, h[1].address):
        c.submit(h[1], 0, taken, "u", H(32))
    general = coalition.account(c.get_model(mid).general)
    not_general = next(v for v in coalition.voters(mid) if v.address != general.address)
    with refused("WrongState", coalition, not_general.address):
        c.vote(not_general, mid, True, 1, 1, H(32))  # not opened yet
    with refused("NotGeneral", coalition, not_general.address):
        c.open_candidate(not_general, mid, True, H(32))
    with refused("ZeroHash", coalition, general.address):
        c.open_candidate(general, mid, True, b"\0" * 32)
    with refused("DeadlineNotReached", coalition, not_general.address):
        c.reassign_general(not_general, mid)
    with refused("DeadlineNotReached", coalition, not_general.address):
        c.expire(not_general, mid)
    c.open_candidate(general, mid, True, H(32))
    with refused("WrongState", coalition, general.address):
        c.open_candidate(general, mid, True, H(32))
    with refused("ProposerCannotVote", coalition, h[0].address):
        c.vote(h[0], mid, True, 1, 1, H(32))
    with refused("NotValidator", coalition, stranger.address):
        c.vote(stranger, mid, True, 1, 1, H(32))
    c.vote(general, mid, True, 1, 1, H(32))
    with refused("AlreadyVoted", coalition, general.address):
        c.vote(general, mid, False, 0, 0, H(32))
    with refused("UnknownModel", coalition, general.address):
        c.vote(general, 99, True, 1, 1, H(32))
    with refused("WrongState", coalition, general.address):
        c.mark_stale(general, mid)


def test_no_validator_but_the_proposer_refuses_submission(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=1)
    with refused("NoValidators", co, co.hospitals[0].address):
        co.client.submit(co.hospitals[0], 0, H(32), "u", H(32))


def test_member_only_account_cannot_vote(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=2, members=1)
    mid = co.submit(co.hospitals[0])
    co.open(mid)
    with refused("NotValidator", co, co.hospitals[2].address):
        co.client.vote(co.hospitals[2], mid, True, 1, 1, H(32))


def test_validator_added_after_submission_is_not_eligible(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    late = coalition.spare[0]
    coalition.govern(Admit(late.address, VALIDATING))
    with refused("NotEligible", coalition, late.address):
        c.vote(late, mid, True, 1, 1, H(32))
    assert c.get_model(mid).eligible == 3


def test_deactivated_validator_cannot_vote(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    leaver = coalition.voters(mid)[0]
    coalition.govern(Remove(leaver.address))
    with refused("NotValidator", coalition, leaver.address):
        c.vote(leaver, mid, True, 1, 1, H(32))


# ---- deadlines (time travel) -----------------------------------------------------------------------------


def test_silent_general_is_reassigned_never_to_the_same_account(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    first = c.get_model(mid).general
    coalition.chain.advance_time(601)
    late = coalition.account(first)
    with refused("DeadlinePassed", coalition, late.address):
        c.open_candidate(late, mid, True, H(32))
    tx = c.reassign_general(coalition.spare[0], mid)  # anyone may call it
    ev = tx.event("GeneralReassigned")
    assert ev is not None and ev.args["previousGeneral"] == first
    second = c.get_model(mid).general
    assert second not in (first, coalition.hospitals[0].address)
    coalition.chain.advance_time(601)
    c.reassign_general(coalition.spare[0], mid)
    assert c.get_model(mid).general != second
    coalition.open(mid)
    assert c.get_model(mid).state == ModelState.OPEN


def test_reassignment_with_no_other_validator_is_refused(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=2)
    mid = co.submit(co.hospitals[0])
    chain.advance_time(601)
    with refused("NoOtherGeneral", co, co.spare[0].address):
        co.client.reassign_general(co.spare[0], mid)
    co.client.expire(co.spare[0], mid)  # the way out: the candidate expires
    assert co.client.get_model(mid).state == ModelState.EXPIRED


def test_votes_after_the_deadline_are_refused_and_the_candidate_expires(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    general = coalition.open(mid)
    coalition.chain.advance_time(601)
    with refused("DeadlinePassed", coalition, general.address):
        c.vote(general, mid, True, 1, 1, H(32))
    with refused("WrongState", coalition, general.address):
        c.reassign_general(general, mid)
    tx = c.expire(coalition.spare[0], mid)
    assert tx.event("Expired") is not None
    assert c.get_model(mid).state == ModelState.EXPIRED
    with refused("WrongState", coalition, general.address):
        c.expire(general, mid)


# ---- stale candidates ------------------------------------------------------------------------------------


def test_sibling_of_a_committed_candidate_goes_stale_when_touched(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    first = coalition.submit(h[0], parent=0)
    second = coalition.submit(h[1], parent=0)
    coalition.open(second)
    coalition.open(first)
    for v in coalition.voters(first)[:2]:
        c.vote(v, first, True, 0.9, 0.9, H(32))
    assert c.head() == first
    voter = coalition.voters(second)[0]
    with pytest.raises(ContractRevert) as info:
        c.vote(voter, second, True, 0.9, 0.9, H(32))
    assert info.value.error == "Stale"
    assert c.get_model(second).state == ModelState.STALE
    assert [e.name for e in c.events() if e.name == "Staled"] == ["Staled"]
    assert not c.has_voted(second, voter.address)
    with refused("StaleParent", coalition, h[1].address):
        c.submit(h[1], 0, H(32), "u", H(32))
    third = coalition.submit(h[1])  # the member rebases on the new head
    assert c.get_model(third).parent_id == first


def test_mark_stale_by_anyone(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    first, second = coalition.submit(h[0], parent=0), coalition.submit(h[1], parent=0)
    coalition.open(first)
    for v in coalition.voters(first)[:2]:
        c.vote(v, first, True, 0.9, 0.9, H(32))
    tx = c.mark_stale(coalition.spare[0], second)
    assert tx.event("Staled") is not None
    assert c.get_model(second).state == ModelState.STALE
