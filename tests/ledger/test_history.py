"""The history rebuilt from logs alone agrees with the contract's views, for every kind of outcome."""

from __future__ import annotations

import json
import os

from tclearn.ledger.history import fold, rebuild, to_json
from tclearn.types import ModelState, RejectReason, Role
from tests.conftest import Coalition


def test_history_from_logs_matches_the_contract(coalition: Coalition) -> None:
    c, h = coalition.client, coalition.hospitals
    committed = coalition.submit(h[0])
    coalition.open(committed)
    for v in coalition.voters(committed)[:2]:
        c.vote(v, committed, True, 0.9, 0.8, os.urandom(32))
    broken = coalition.submit(h[1])
    coalition.open(broken, ok=False)
    voted_down = coalition.submit(h[2])
    coalition.open(voted_down)
    for v in coalition.voters(voted_down)[:2]:
        c.vote(v, voted_down, False, 0.1, 0.2, os.urandom(32))
    sibling_a, sibling_b = coalition.submit(h[3]), coalition.submit(h[0])
    coalition.chain.advance_time(601)
    c.reassign_general(coalition.spare[0], sibling_a)
    coalition.open(sibling_a)
    for v in coalition.voters(sibling_a)[:2]:
        c.vote(v, sibling_a, True, 0.95, 0.9, os.urandom(32))
    c.mark_stale(coalition.spare[0], sibling_b)
    expiring = coalition.submit(h[1])
    coalition.chain.advance_time(601)
    c.expire(coalition.spare[0], expiring)
    c.set_roles(coalition.admin, h[3].address, Role.MEMBER)

    history = rebuild(c.events())

    assert history.head == c.head() == sibling_a
    assert history.lineage() == [0, committed, sibling_a]
    for mid in range(c.model_count()):
        view, past = c.get_model(mid), history.candidates[mid]
        assert (past.state, past.approvals, past.rejections, past.general, past.model_hash, past.uri) == (
            view.state,
            view.approvals,
            view.rejections,
            view.general,
            view.model_hash,
            view.uri,
        ), mid
    assert history.candidates[broken].reject_reason == RejectReason.INTEGRITY
    assert history.candidates[voted_down].reject_reason == RejectReason.VOTES
    assert history.candidates[sibling_b].state == ModelState.STALE
    assert len(history.candidates[sibling_a].generals) == 2
    assert history.candidates[voted_down].votes[0].score_local == 0.2
    assert history.members[h[3].address].roles == Role.MEMBER
    assert history.name_of(h[0].address) == "hospital-0"
    exported = json.loads(json.dumps(to_json(history)))
    assert [m["state"] for m in exported["models"]][committed] == "committed"


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
