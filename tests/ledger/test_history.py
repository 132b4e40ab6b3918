"""Folding the contract's logs in batches gives the history rebuilt at once.

That the history agrees with the views for every kind of outcome is checked on every backend in
test_ledger_backends.py.
"""

from __future__ import annotations

import os

from tclearn.ledger.history import fold, rebuild, to_json
from tclearn.types import ModelState
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
