"""The contract commits and rejects exactly where the pure quorum rules say, for eligible = 1..10."""

from __future__ import annotations

import os

import pytest

from tclearn.ledger.chain import embedded_chain
from tclearn.protocol import approvals_needed, rejections_needed
from tclearn.types import ModelState
from tests.conftest import ACCOUNTS, deploy_coalition


@pytest.mark.parametrize("approve", [True, False], ids=["commit", "reject"])
@pytest.mark.parametrize("eligible", range(1, 11))
def test_decision_happens_exactly_at_the_threshold(eligible: int, approve: bool) -> None:
    co = deploy_coalition(embedded_chain(ACCOUNTS), validators=eligible + 1)  # the proposer validates too
    mid = co.submit(co.hospitals[0])
    assert co.client.get_model(mid).eligible == eligible
    co.open(mid)
    needed = approvals_needed(eligible) if approve else rejections_needed(eligible)
    final = ModelState.COMMITTED if approve else ModelState.REJECTED
    for n, voter in enumerate(co.voters(mid)[:needed], start=1):
        outcome = co.client.vote(voter, mid, approve, 0.5, 0.5, os.urandom(32))
        assert outcome.state == (final if n == needed else ModelState.OPEN), f"vote {n} of {needed}"
    assert co.client.head() == (mid if approve else 0)
