"""Signed votes: validators post them to the vault's ballot box and the one whose vote completes a deciding set sends
them all in one `decide` (stub models on the embedded chain); late, forged and garbled ballots change nothing."""

from __future__ import annotations

import os

import pytest
from eth_account.signers.local import LocalAccount

from tclearn.canonical import canonical_json
from tclearn.coalition import ballots
from tclearn.coalition import general as general_duty
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.context import Coalition
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import run_round
from tclearn.learning.attacks import Attack
from tclearn.ledger.votes import SignedVote, sign_vote
from tclearn.types import ModelRecord, ModelState, VoteMode
from tests.coalition.fakes import chain_stub_coalition


def signed(approve: bool) -> SignedVote:
    """A vote whose only meaningful field here is `approve` (`decisive` counts, it does not verify)."""
    return SignedVote(1, b"\x01" * 32, approve, 0, 0, b"\x02" * 32, "0x" + "11" * 20, b"\x00" * 65)


@pytest.mark.parametrize(
    ("approves", "eligible", "on_chain", "expected"),
    [
        ([], 3, (0, 0), False),
        ([True], 3, (0, 0), False),
        ([True, True], 3, (0, 0), True),  # 2 of 3 approve: committed
        ([False], 3, (0, 0), False),
        ([False, False], 3, (0, 0), True),  # 2 of 3 reject: two thirds can no longer approve
        ([True, False], 3, (0, 0), False),
        ([True], 3, (1, 0), True),  # one approval cast directly, one signed
        ([False], 3, (0, 1), True),
        ([True, True], 4, (0, 0), False),  # 3 of 4 needed
        ([True, True, True], 4, (0, 0), True),
        ([False, False], 4, (0, 0), True),
        ([True] * 4, 6, (0, 0), True),
        ([True] * 3, 6, (0, 0), False),
        ([True], 1, (0, 0), True),
        ([], 0, (0, 0), False),  # nobody eligible: nothing decides (the contract expires it)
    ],
)
def test_decisive(approves: list[bool], eligible: int, on_chain: tuple[int, int], expected: bool) -> None:
    votes = [signed(a) for a in approves]
    assert ballots.decisive(votes, eligible, approvals=on_chain[0], rejections=on_chain[1]) is expected


@pytest.fixture
def co() -> Coalition:
    """h0 proposes, h1..h3 vote: 2 of 3 decide. Any update size passes the general, so that validators judge."""
    return chain_stub_coalition(4, policy=AcceptancePolicy(min_batch_size=4, max_update=100.0))


def events(co: Coalition, name: str, model_id: int) -> list[str]:
    """The transactions of `name` events on `model_id`."""
    return [e.tx_hash for e in co.client.events() if e.name == name and e.args.get("id") == model_id]


def voters(co: Coalition, model_id: int) -> set[str]:
    return {e.args["validator"] for e in co.client.events() if e.name == "Voted" and e.args["id"] == model_id}


def opened(co: Coalition) -> ModelRecord:
    """A candidate of h0, opened by its general."""
    model_id = propose(co, co.hospitals[0]).submission.model_id
    candidate = co.client.get_model(model_id)
    assert general_duty.open_candidate(co, co.hospital(candidate.general), candidate)[0]
    return co.client.get_model(model_id)


@pytest.mark.parametrize(("attack", "state"), [(Attack.NONE, "committed"), (Attack.SIGN_FLIP, "rejected")])
def test_a_round_of_signed_votes_is_decided_in_one_transaction(co: Coalition, attack: Attack, state: str) -> None:
    co.hospitals[0].attack = attack

    row = run_round(co, co.hospitals[0])

    assert row.state == state and row.id is not None
    decided = events(co, state.capitalize(), row.id)
    assert len(decided) == 1 and events(co, "Voted", row.id) == decided * 2  # both votes in the deciding tx
    assert row.gas["votes"] > 0 and row.approvals + row.rejections == 2
    assert not any(co.client.has_voted(row.id, h.address) for h in co.hospitals)  # no `vote` transaction
    model = co.client.get_model(row.id, with_uri=False).model_hash.hex()
    assert set(co.store.ballots(model)) == voters(co, row.id)  # the ballot box holds what went on chain


def test_a_vote_after_the_decision_is_ignored(co: Coalition) -> None:
    candidate = opened(co)
    first, second, third = (h for h in co.hospitals[1:])
    assert validator_duty.vote(co, first, candidate).outcome is None  # posted: one approval decides nothing
    assert validator_duty.vote(co, second, candidate).state is ModelState.COMMITTED
    decided = events(co, "Voted", candidate.id)

    late = validator_duty.vote(co, third, candidate)
    vote = sign_vote(
        third.account, co.client.domain, candidate.id, candidate.model_hash, True, 0.6, 0.6, os.urandom(32)
    )
    ballots.publish(co, vote)  # posted anyway, after the decision

    assert late.late and late.outcome is None and late.signed is None
    assert ballots.try_decide(co, third.account, candidate) is None  # no revert, no transaction
    assert events(co, "Voted", candidate.id) == decided and voters(co, candidate.id) == {first.address, second.address}
    assert co.client.get_model(candidate.id, with_uri=False).state is ModelState.COMMITTED


def test_forged_garbled_and_ineligible_ballots_are_skipped(co: Coalition) -> None:
    candidate = opened(co)
    proposer, first, second, silent = co.hospitals
    outsider, stranger = co.client.chain.dev_keys[-1], co.client.chain.dev_keys[-2]
    model = candidate.model_hash.hex()

    def vote_of(signer: LocalAccount, approve: bool = False) -> SignedVote:
        return sign_vote(signer, co.client.domain, candidate.id, candidate.model_hash, approve, 0.1, 0.1, b"\x03" * 32)

    forged = SignedVote(**{**vote_of(outsider).__dict__, "signer": silent.address})  # outsider's key, silent's name
    co.store.post_ballot(model, silent.address, canonical_json(forged.to_json()))
    co.store.post_ballot(model, stranger.address, b"\xff not a vote")
    co.store.post_ballot(model, outsider.address, canonical_json(vote_of(outsider).to_json()))  # no member
    co.store.post_ballot(model, proposer.address, canonical_json(vote_of(proposer.account, True).to_json()))
    assert ballots.collected(co, candidate) == []

    assert validator_duty.vote(co, first, candidate).outcome is None
    assert validator_duty.vote(co, second, candidate).state is ModelState.COMMITTED
    assert voters(co, candidate.id) == {first.address, second.address}


def test_a_direct_vote_counts_with_the_signed_ones(co: Coalition) -> None:
    candidate = opened(co)
    _, first, second, _ = co.hospitals
    co.votes = VoteMode.DIRECT
    direct = validator_duty.vote(co, first, candidate)
    co.votes = VoteMode.SIGNED

    cast = validator_duty.vote(co, second, candidate)  # one signed approval and the direct one decide

    assert (
        direct.state is ModelState.OPEN and direct.signed is None and co.client.has_voted(candidate.id, first.address)
    )
    assert cast.state is ModelState.COMMITTED and cast.signed is not None
    assert len(events(co, "Voted", candidate.id)) == 2 and len(events(co, "Committed", candidate.id)) == 1
