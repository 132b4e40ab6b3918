"""The history folded from the contract's logs: in batches as at once, and as the contract's views hold it —
proposals with their actions and ballots, members, parameters, the founding link, signed votes.

That the history agrees with the views for every kind of outcome is checked on every backend in
test_ledger_backends.py.
"""

from __future__ import annotations

import os

from eth_utils import to_checksum_address

from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import (
    Admit,
    Parameters,
    ProposalState,
    Remove,
    RotateSupervisor,
    SetParameters,
    SetRoles,
)
from tclearn.ledger.history import fold, rebuild, to_json
from tclearn.ledger.ledger import ZERO_ADDRESS, Predecessor
from tclearn.ledger.votes import sign_vote
from tclearn.types import ModelState, Role, Variant
from tests.conftest import Coalition


def test_folding_events_in_batches_gives_the_same_history(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    first = coalition.submit(h[0])
    middle = c.chain.latest_block()
    coalition.open(first)
    for v in coalition.voters(first)[:2]:
        c.vote(v, first, True, 0.9, 0.8, os.urandom(32))

    partial = rebuild(c.events(0, middle))
    assert partial.candidates[first].state is ModelState.SUBMITTED and partial.head == 0
    folded = fold(partial, c.events(middle + 1))

    assert folded is partial and to_json(folded) == to_json(rebuild(c.events()))
    assert folded.head == first and len(folded.candidates[first].votes) == 2


def test_proposals_ballots_members_and_parameters_are_rebuilt_as_the_contract_holds_them(
    coalition: Coalition,
) -> None:
    c, (h0, h1, h2, h3), newcomer = coalition.client, coalition.hospitals, coalition.spare[0]
    new_parameters = Parameters(b"\x0a" * 32, b"\x0b" * 32, 11, 22, 33, 2)
    coalition.govern(Admit(newcomer.address, Role.MEMBER | Role.VALIDATOR, b"\x07" * 32, "St Luke"))
    coalition.govern(SetParameters(new_parameters), proposer=h1)
    coalition.govern(RotateSupervisor(ZERO_ADDRESS, h2.address))
    rejected = c.propose(h0, Remove(h3.address)).id
    for member in (h1, h2):
        c.ballot(member, rejected, False)
    pending = c.propose(h3, SetRoles(h0.address, Role.MEMBER)).id
    c.ballot(newcomer, pending, True)

    h = rebuild(c.events())

    assert list(h.proposals) == [p.id for p in c.proposals()] == [0, 1, 2, 3, 4]
    for chain_view in c.proposals():
        folded = h.proposals[chain_view.id]
        assert (folded.action, folded.kind, folded.proposer, folded.eligible, folded.deadline) == (
            chain_view.action,
            int(chain_view.action.kind),
            chain_view.proposer,
            chain_view.eligible,
            chain_view.deadline,
        )
        assert (folded.state, folded.approvals, folded.rejections) == (
            chain_view.state,
            chain_view.approvals,
            chain_view.rejections,
        )
        assert [(b.member, b.approve, b.block) for b in folded.ballots] == [
            (b.member, b.approve, b.block_number) for b in chain_view.ballots
        ]
        assert folded.action_data == chain_view.action.encode()
    assert [h.proposals[i].state for i in range(5)] == [ProposalState.EXECUTED] * 3 + [
        ProposalState.REJECTED,
        ProposalState.PENDING,
    ]
    assert all(h.proposals[i].closed_block is not None for i in range(4)) and h.proposals[4].closed_block is None
    members = {m.address: m for m in c.members()}
    assert {a: (m.roles, m.active, m.member_since, m.name) for a, m in h.members.items()} == {
        a: (m.roles, m.active, m.member_since, m.name) for a, m in members.items()
    }
    assert h.members[newcomer.address].member_since == 1
    assert [d.parameters for d in h.parameters] == [h.parameters[0].parameters, new_parameters]
    assert h.parameters[-1].parameters == c.parameters() and h.policy_hash == c.policy_hash()
    assert [p.hash for p in h.policies] == [h.parameters[0].parameters.policy_hash, b"\x0a" * 32]
    assert h.supervisor == h2.address


def test_the_json_names_proposals_and_says_which_expired(coalition: Coalition) -> None:
    c, (h0, h1, h2, h3) = coalition.client, coalition.hospitals
    coalition.govern(Remove(h3.address))
    pending = c.propose(h0, SetRoles(h1.address, Role.MEMBER)).id

    document = to_json(rebuild(c.events()))

    assert "admin" not in document and document["supervisor"] is None
    executed, waiting = document["proposals"]
    assert executed["state"] == "executed" and executed["action"]["kind"] == "remove"
    assert executed["action"]["description"] == f"remove {h3.address}"
    assert (executed["approvals"], executed["needed"], executed["eligible"]) == (3, 3, 4)
    assert [b["member"] for b in executed["ballots"]] == [h0.address, h1.address, h2.address]
    assert waiting["id"] == pending and waiting["state"] == "pending" and waiting["eligible"] == 3
    deadline = c.proposal(pending).deadline
    later = to_json(rebuild(c.events()), now=deadline + 1)
    assert [p["state"] for p in later["proposals"]] == ["executed", "expired"]
    assert to_json(rebuild(c.events()), now=deadline)["proposals"][1]["state"] == "pending"
    assert document["parameters"][0]["min_validators"] == 2 and document["parameters"][0]["from_model"] == 0
    assert [m["member_since"] for m in document["members"]] == [0, 0, 0, 0]


def test_the_founding_links_the_predecessor(chain: Chain) -> None:
    deployer, founder, other = chain.dev_keys[:3]
    link = Predecessor(5, to_checksum_address("0x" + "cd" * 20), 17)
    founders = [
        Admit(founder.address, Role.MEMBER | Role.VALIDATOR),
        Admit(other.address, Role.MEMBER | Role.VALIDATOR),
    ]
    genesis = os.urandom(32)
    client, _ = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.B,
        genesis_hash=genesis,
        genesis_uri="g",
        parameters=Parameters(os.urandom(32)),
        founders=founders,
        predecessor=link,
    )
    h = rebuild(client.events())
    assert h.founding is not None and h.founding.migrated and h.founding.genesis_hash == genesis
    assert to_json(h)["founding"]["predecessor"] == {"chain_id": 5, "coalition": link.coalition, "head_id": 17}
    assert h.candidates[0].model_hash == genesis and h.candidates[0].metadata_hash == b"\0" * 32


def test_a_new_coalition_has_no_predecessor(coalition: Coalition) -> None:
    founding = to_json(rebuild(coalition.client.events()))["founding"]
    assert founding is not None and founding["predecessor"] is None
    assert founding["genesis_hash"] == "0x" + coalition.client.get_model(0).model_hash.hex()


def test_signed_votes_are_in_the_history_as_the_decide_emitted_them(coalition: Coalition) -> None:
    c = coalition.client
    mid = coalition.submit(coalition.hospitals[0])
    coalition.open(mid)
    model_hash = c.get_model(mid).model_hash
    voters = coalition.voters(mid)
    votes = [sign_vote(v, c.domain, mid, model_hash, i != 2, 0.9, 0.5, os.urandom(32)) for i, v in enumerate(voters)]
    tx = c.decide(coalition.spare[0], mid, votes).tx
    candidate = rebuild(c.events()).candidates[mid]
    emitted = [e.args for e in tx.events if e.name == "Voted"]
    assert [(v.validator, v.approve, v.evidence_hash) for v in candidate.votes] == [
        (a["validator"], a["approve"], a["evidenceHash"]) for a in emitted
    ]
    assert [v.validator for v in candidate.votes] == sorted((v.address for v in voters), key=lambda a: int(a, 16))
    assert (candidate.state, candidate.approvals, candidate.rejections) == (ModelState.COMMITTED, 2, 1)
    assert candidate.metadata_hash == c.get_model(mid).metadata_hash  # from Submitted, the only place it lives
