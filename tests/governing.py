"""Governance in tests: a change carried by a coalition's members on any `Ledger` (contract or in-memory) —
proposed by one member, approved by others until two thirds of the active members have, executed."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount

from tclearn.ledger.governance import Action, Proposal, ProposalState
from tclearn.ledger.ledger import Ledger, TxResult


def approve(
    ledger: Ledger, accounts: Sequence[LocalAccount], action: Action, proposer: LocalAccount | None = None
) -> Proposal:
    """`action` proposed by `proposer` (default: the first active member among `accounts`) and approved by the
    others that may ballot on it until it is executable; raises if `accounts` cannot carry it."""
    active = [a for a in accounts if (m := ledger.get_member(a.address)) is not None and m.active]
    if not active:
        raise ValueError("a proposal needs an active member to make it")
    by = proposer or active[0]
    proposal = ledger.propose(by, action)
    for account in active:
        if proposal.executable:
            break
        member = ledger.get_member(account.address)
        if account is not by and member is not None and member.member_since <= proposal.id:
            ledger.ballot(account, proposal.id, True)
            proposal = ledger.proposal(proposal.id)
    if not proposal.executable:
        raise ValueError(f"{proposal.approvals} approvals of {proposal.eligible} cannot carry proposal {proposal.id}")
    return proposal


def govern(
    ledger: Ledger,
    accounts: Sequence[LocalAccount],
    action: Action,
    *,
    proposer: LocalAccount | None = None,
    executor: LocalAccount | None = None,
) -> TxResult:
    """`action` approved as `approve` does and executed (by `executor`, default its proposer: anyone may); returns
    the execution's result (its `ProposalExecuted` event names the proposal)."""
    proposal = approve(ledger, accounts, action, proposer)
    by = executor or next(a for a in accounts if a.address == proposal.proposer)
    tx = ledger.execute(by, proposal.id)
    assert ledger.proposal(proposal.id).state is ProposalState.EXECUTED
    return tx
