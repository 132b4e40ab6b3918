"""Governance in tests: a change carried by the coalition's members on any `Ledger` (contract or in-memory)."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount

from tclearn.ledger.governance import Action
from tclearn.ledger.ledger import Ledger, TxResult


def govern(ledger: Ledger, members: Sequence[LocalAccount], action: Action) -> TxResult:
    """`action` proposed by the first of `members` that may, approved by as many of the others as it takes (two
    thirds of the active members), and executed; returns the execution's result. `members` must hold enough
    active members to carry it."""
    active = [m for m in members if (r := ledger.get_member(m.address)) is not None and r.active]
    if not active:
        raise ValueError("govern needs an active member to propose")
    proposal = ledger.propose(active[0], action)
    for member in active[1:]:
        if proposal.executable:
            break
        ledger.ballot(member, proposal.id, True)
        proposal = ledger.proposal(proposal.id)
    if not proposal.executable:
        raise ValueError(f"{len(active)} approvals of {proposal.eligible} cannot carry proposal {proposal.id}")
    return ledger.execute(active[0], proposal.id)
