"""Every transition and every revert of Coalition.sol, on the embedded chain."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tclearn.errors import ContractRevert
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.types import ModelState, RejectReason, Role, Variant
from tests.conftest import Coalition, deploy_coalition

H = os.urandom


@contextmanager
def refused(error: str, chain: Chain | None = None, sender: str | None = None) -> Iterator[None]:
    """Expects the contract to refuse with `error`, and (if given) that `sender` sent no transaction."""
    nonce = chain.w3.eth.get_transaction_count(sender) if chain and sender else None
    with pytest.raises(ContractRevert) as info:
        yield
    assert info.value.error == error, str(info.value)
    assert error in str(info.value)
    if chain and sender:
        assert chain.w3.eth.get_transaction_count(sender) == nonce, "a transaction known to revert was sent"


# ---- deployment and membership -------------------------------------------------------------------------


def test_genesis_is_committed_head_and_logged(coalition: Coalition) -> None:
    c = coalition.client
    genesis = c.get_model(0)
    assert (c.head(), c.model_count(), genesis.state) == (0, 1, ModelState.COMMITTED)
    assert genesis.uri == "vault://genesis"
    names = [e.name for e in c.events() if e.args.get("id", 0) == 0 and e.name in ("Submitted", "Committed")]
    assert names == ["Submitted", "Committed"]
    assert c.variant() == Variant.B and c.timeouts() == (600, 600)


@pytest.mark.parametrize(
    ("variant", "genesis", "policy", "general_timeout", "error"),
    [
        (0, H(32), H(32), 60, "InvalidVariant"),
        (4, H(32), H(32), 60, "InvalidVariant"),
        (1, b"\0" * 32, H(32), 60, "ZeroHash"),
        (1, H(32), b"\0" * 32, 60, "ZeroHash"),
        (1, H(32), H(32), 0, "InvalidTimeout"),
    ],
)
def test_bad_deployment_is_refused(
    chain: Chain, variant: int, genesis: bytes, policy: bytes, general_timeout: int, error: str
) -> None:
    admin = chain.dev_keys[0]
    with refused(error, chain, admin.address):
        LedgerClient.deploy(
            chain,
            admin,
            variant=variant,  # type: ignore[arg-type]
            genesis_hash=genesis,
            genesis_uri="g",
            policy_hash=policy,
            general_timeout=general_timeout,
        )


def test_membership_lifecycle(coalition: Coalition) -> None:
    c, admin, newcomer = coalition.client, coalition.admin, coalition.spare[0]
    tx = c.register_member(admin, newcomer.address, Role.MEMBER, b"\x07" * 32, "St Luke")
    assert tx.event("MemberRegistered") is not None
    member = c.get_member(newcomer.address)
    assert member is not None and member.name == "St Luke" and member.encryption_key == b"\x07" * 32
    assert c.validator_count() == 4
    c.set_roles(admin, newcomer.address, Role.MEMBER | Role.VALIDATOR)
    assert c.validator_count() == 5
    c.set_encryption_key(newcomer, b"\x08" * 32)
    assert c.get_member(newcomer.address).encryption_key == b"\x08" * 32  # type: ignore[union-attr]
    c.deactivate_member(admin, newcomer.address)
    gone = c.get_member(newcomer.address)
    assert gone is not None and not gone.active and c.validator_count() == 4
    c.register_member(admin, newcomer.address, Role.AUDITOR, b"\x09" * 32, "St Luke (audit)")
    back = c.get_member(newcomer.address)
    assert back is not None and back.active and back.roles == Role.AUDITOR and back.index == gone.index
    assert len(c.members()) == 5
    assert c.get_member(coalition.spare[1].address) is None


def test_admin_transfer_and_test_set(coalition: Coalition) -> None:
    c, admin, heir = coalition.client, coalition.admin, coalition.spare[0]
    c.set_global_test_set(admin, b"\x05" * 32)
    assert c.global_test_set_hash() == b"\x05" * 32
    c.transfer_admin(admin, heir.address)
    assert c.admin() == heir.address
    with refused("NotAdmin", coalition.chain, admin.address):
        c.set_global_test_set(admin, b"\x06" * 32)


def test_the_admin_declares_a_new_policy(coalition: Coalition) -> None:
    c, admin, h0 = coalition.client, coalition.admin, coalition.hospitals[0]
    first = c.policy_hash()
    assert first != b"\0" * 32
    assert [e.args["hash"] for e in c.events() if e.name == "PolicyChanged"] == [first]
    tx = c.set_policy(admin, b"\x0a" * 32)
    assert tx.event("PolicyChanged") is not None and tx.event("PolicyChanged").args["hash"] == b"\x0a" * 32  # type: ignore[union-attr]
    assert c.policy_hash() == b"\x0a" * 32
    with refused("NotAdmin", coalition.chain, h0.address):
        c.set_policy(h0, b"\x0b" * 32)
    with refused("ZeroHash", coalition.chain, admin.address):
        c.set_policy(admin, b"\0" * 32)
    assert c.policy_hash() == b"\x0a" * 32


def test_membership_reverts(coalition: Coalition) -> None:
    c, admin, h0, stranger = coalition.client, coalition.admin, coalition.hospitals[0], coalition.spare[0]
    ch = coalition.chain
    with refused("NotAdmin", ch, h0.address):
        c.register_member(h0, stranger.address, Role.MEMBER)
    with refused("AlreadyMember", ch, admin.address):
        c.register_member(admin, h0.address, Role.MEMBER)
    for bad in (0, 16):
        with refused("InvalidRoles", ch, admin.address):
            c.register_member(admin, stranger.address, Role(bad) if bad < 16 else bad)  # type: ignore[arg-type]
    with refused("ZeroAddress", ch, admin.address):
        c.register_member(admin, "0x" + "00" * 20, Role.MEMBER)
    with refused("NotMember", ch, admin.address):
        c.set_roles(admin, stranger.address, Role.MEMBER)
    with refused("NotMember", ch, admin.address):
        c.deactivate_member(admin, stranger.address)
    with refused("NotMember", ch, stranger.address):
        c.set_encryption_key(stranger, b"\x01" * 32)
    with refused("ZeroAddress", ch, admin.address):
        c.transfer_admin(admin, "0x" + "00" * 20)


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
    with refused("WrongState", coalition.chain, v3.address):
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
    c, ch, h = coalition.client, coalition.chain, coalition.hospitals
    stranger = coalition.spare[0]
    with refused("NotMember", ch, stranger.address):
        c.submit(stranger, 0, H(32), "u", H(32))
    with refused("StaleParent", ch, h[0].address):
        c.submit(h[0], 5, H(32), "u", H(32))
    for model_hash, metadata_hash in ((b"\0" * 32, H(32)), (H(32), b"\0" * 32)):
        with refused("ZeroHash", ch, h[0].address):
            c.submit(h[0], 0, model_hash, "u", metadata_hash)
    taken = H(32)
    mid = c.submit(h[0], 0, taken, "u", H(32)).model_id
    with refused("DuplicateModel", ch, h[1].address):
        c.submit(h[1], 0, taken, "u", H(32))
    general = coalition.account(c.get_model(mid).general)
    not_general = next(v for v in coalition.voters(mid) if v.address != general.address)
    with refused("WrongState", ch, not_general.address):
        c.vote(not_general, mid, True, 1, 1, H(32))  # not opened yet
    with refused("NotGeneral", ch, not_general.address):
        c.open_candidate(not_general, mid, True, H(32))
    with refused("ZeroHash", ch, general.address):
        c.open_candidate(general, mid, True, b"\0" * 32)
    with refused("DeadlineNotReached", ch, not_general.address):
        c.reassign_general(not_general, mid)
    with refused("DeadlineNotReached", ch, not_general.address):
        c.expire(not_general, mid)
    c.open_candidate(general, mid, True, H(32))
    with refused("WrongState", ch, general.address):
        c.open_candidate(general, mid, True, H(32))
    with refused("ProposerCannotVote", ch, h[0].address):
        c.vote(h[0], mid, True, 1, 1, H(32))
    with refused("NotValidator", ch, stranger.address):
        c.vote(stranger, mid, True, 1, 1, H(32))
    c.vote(general, mid, True, 1, 1, H(32))
    with refused("AlreadyVoted", ch, general.address):
        c.vote(general, mid, False, 0, 0, H(32))
    with refused("UnknownModel", ch, general.address):
        c.vote(general, 99, True, 1, 1, H(32))
    with refused("WrongState", ch, general.address):
        c.mark_stale(general, mid)


def test_no_validator_but_the_proposer_refuses_submission(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=1)
    with refused("NoValidators", chain, co.hospitals[0].address):
        co.client.submit(co.hospitals[0], 0, H(32), "u", H(32))


def test_member_only_account_cannot_vote(chain: Chain) -> None:
    co = deploy_coalition(chain, validators=2, members=1)
    mid = co.submit(co.hospitals[0])
    co.open(mid)
    with refused("NotValidator", chain, co.hospitals[2].address):
        co.client.vote(co.hospitals[2], mid, True, 1, 1, H(32))


def test_validator_added_after_submission_is_not_eligible(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    late = coalition.spare[0]
    c.register_member(coalition.admin, late.address, Role.MEMBER | Role.VALIDATOR)
    with refused("NotEligible", coalition.chain, late.address):
        c.vote(late, mid, True, 1, 1, H(32))
    assert c.get_model(mid).eligible == 3


def test_deactivated_validator_cannot_vote(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    leaver = coalition.voters(mid)[0]
    c.deactivate_member(coalition.admin, leaver.address)
    with refused("NotValidator", coalition.chain, leaver.address):
        c.vote(leaver, mid, True, 1, 1, H(32))


# ---- deadlines (time travel) -----------------------------------------------------------------------------


def test_silent_general_is_reassigned_never_to_the_same_account(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    first = c.get_model(mid).general
    coalition.chain.advance_time(601)
    late = coalition.account(first)
    with refused("DeadlinePassed", coalition.chain, late.address):
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
    with refused("NoOtherGeneral", chain, co.spare[0].address):
        co.client.reassign_general(co.spare[0], mid)
    co.client.expire(co.spare[0], mid)  # the way out: the candidate expires
    assert co.client.get_model(mid).state == ModelState.EXPIRED


def test_votes_after_the_deadline_are_refused_and_the_candidate_expires(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    general = coalition.open(mid)
    coalition.chain.advance_time(601)
    with refused("DeadlinePassed", coalition.chain, general.address):
        c.vote(general, mid, True, 1, 1, H(32))
    with refused("WrongState", coalition.chain, general.address):
        c.reassign_general(general, mid)
    tx = c.expire(coalition.spare[0], mid)
    assert tx.event("Expired") is not None
    assert c.get_model(mid).state == ModelState.EXPIRED
    with refused("WrongState", coalition.chain, general.address):
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
    with refused("StaleParent", coalition.chain, h[1].address):
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
