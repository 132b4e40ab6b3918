"""Carrying a governance action in tests whose coalition is not `tests.conftest.Coalition` (a demo run, a
hand-made coalition): proposed by one member, approved by others until two thirds have, executed."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount

from tclearn.ledger.governance import Action, Proposal, ProposalState
from tclearn.ledger.ledger import Ledger


def carry(ledger: Ledger, accounts: Sequence[LocalAccount], action: Action) -> Proposal:
    """`action` executed by the active members among `accounts` (the first proposes it); the proposal after."""
    members = [a for a in accounts if (m := ledger.get_member(a.address)) is not None and m.active]
    proposal = ledger.propose(members[0], action)
    for member in members[1:]:
        if proposal.executable:
            break
        ledger.ballot(member, proposal.id, True)
        proposal = ledger.proposal(proposal.id)
    ledger.execute(members[0], proposal.id)
    done = ledger.proposal(proposal.id)
    assert done.state is ProposalState.EXECUTED, done
    return done
