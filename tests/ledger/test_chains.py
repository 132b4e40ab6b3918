"""The same integration checks on the embedded chain, a real Anvil node and a real Ganache node."""

from __future__ import annotations

import os

import pytest

from tclearn.errors import ContractRevert
from tclearn.ledger.chain import Chain
from tclearn.ledger.localchain import LocalNode
from tclearn.ledger.votes import sign_vote
from tclearn.types import ModelState
from tests.conftest import deploy_coalition, node_chain


def test_round_commits_and_history_is_in_the_logs(any_chain: Chain) -> None:
    co = deploy_coalition(any_chain, validators=4, general_timeout=30, voting_timeout=30)
    c = co.client
    start = c.events()[0].block_number
    mid = co.submit(co.hospitals[0])
    general = co.open(mid)
    assert general.address != co.hospitals[0].address
    for voter in co.voters(mid)[:2]:
        outcome = c.vote(voter, mid, True, 0.9, 0.8, os.urandom(32))
    assert outcome.state == ModelState.COMMITTED and c.head() == mid
    names = [e.name for e in c.events(start) if e.name in ("Submitted", "CandidateOpened", "Voted", "Committed")]
    assert names == ["Submitted", "Committed", "Submitted", "CandidateOpened", "Voted", "Voted", "Committed"]
    voted = [e for e in c.events(start) if e.name == "Voted"]
    assert voted[0].args["scoreGlobal"] == 900_000 and voted[0].args["scoreLocal"] == 800_000
    assert c.get_model(mid).uri == "vault://test"


def test_signed_votes_decide_in_one_transaction(any_chain: Chain) -> None:
    co = deploy_coalition(any_chain, validators=4)
    c = co.client
    mid = co.submit(co.hospitals[0])
    co.open(mid)
    model_hash = c.get_model(mid).model_hash
    votes = [sign_vote(v, c.domain, mid, model_hash, True, 0.9, 0.8, os.urandom(32)) for v in co.voters(mid)[:2]]
    assert c.domain.chain_id == any_chain.chain_id
    outcome = c.decide(co.spare[0], mid, votes)
    assert outcome.state == ModelState.COMMITTED and c.head() == mid
    assert sorted(e.args["validator"] for e in outcome.tx.events if e.name == "Voted") == sorted(
        v.signer for v in votes
    )


def test_revert_is_decoded_and_nothing_is_sent(any_chain: Chain) -> None:
    co = deploy_coalition(any_chain, validators=3)
    stranger = co.spare[0]
    nonce = any_chain.w3.eth.get_transaction_count(stranger.address)
    with pytest.raises(ContractRevert) as info:
        co.client.submit(stranger, 0, os.urandom(32), "u", os.urandom(32))
    assert info.value.error == "NotMember" and stranger.address in str(info.value)
    assert any_chain.w3.eth.get_transaction_count(stranger.address) == nonce


def test_time_travel_expires_a_candidate(any_chain: Chain) -> None:
    co = deploy_coalition(any_chain, validators=3, general_timeout=30, voting_timeout=30)
    mid = co.submit(co.hospitals[0])
    with pytest.raises(ContractRevert, match="DeadlineNotReached"):
        co.client.expire(co.spare[0], mid)
    any_chain.advance_time(120)
    co.client.reassign_general(co.spare[0], mid)
    any_chain.advance_time(120)
    co.client.expire(co.spare[0], mid)
    assert co.client.get_model(mid).state == ModelState.EXPIRED


@pytest.mark.anvil
def test_stale_marking_on_anvil(anvil_node: LocalNode) -> None:
    chain = node_chain(anvil_node)
    co = deploy_coalition(chain, validators=4)
    first, second = co.submit(co.hospitals[0]), co.submit(co.hospitals[1])
    co.open(first)
    for voter in co.voters(first)[:2]:
        co.client.vote(voter, first, True, 0.9, 0.9, os.urandom(32))
    co.client.mark_stale(co.spare[0], second)
    assert co.client.get_model(second).state == ModelState.STALE
