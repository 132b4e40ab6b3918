"""The ballot box: validators sign their votes off chain (`tclearn.ledger.votes`) and post them to the vault beside
the candidate; whoever holds a set of votes that decides the candidate sends all of them in one `decide`.

`collected` keeps only the votes the contract would take (a signature that recovers its declared signer, for this
candidate and model, from a validator that may vote on it and has not voted directly): one forged, garbled or
ineligible document must not make the whole batch revert. A candidate decided meanwhile is no error: its late
votes are simply not needed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount

from tclearn.canonical import canonical_json
from tclearn.coalition.context import Coalition
from tclearn.coalition.dispatch import may_vote
from tclearn.errors import ContractRevert, IntegrityError
from tclearn.ledger.ledger import VoteOutcome
from tclearn.ledger.votes import SignedVote, recover_signer
from tclearn.protocol import is_committed, is_rejected
from tclearn.types import ModelRecord, ModelState

log = logging.getLogger(__name__)

RACES = frozenset({"WrongState", "Stale", "DeadlinePassed"})
"""Reverts of a `decide` that lost a race (decided, staled or expired meanwhile): logged, never an error."""


def publish(co: Coalition, vote: SignedVote) -> None:
    """Posts `vote` to the candidate's ballot box (once: the same vote again changes nothing)."""
    with co.clock("vault"):
        co.store.post_ballot(vote.model_hash.hex(), vote.signer, canonical_json(vote.to_json()))


def collected(co: Coalition, candidate: ModelRecord) -> list[SignedVote]:
    """The votes in `candidate`'s ballot box the contract would take; the rest are logged and skipped."""
    with co.clock("vault"):
        documents = co.store.ballots(candidate.model_hash.hex())
    votes = []
    for signer, document in sorted(documents.items()):
        checked = _checked(co, candidate, signer, document)
        if isinstance(checked, str):
            log.warning("candidate %d: the ballot of %s is skipped: %s", candidate.id, signer, checked)
        else:
            votes.append(checked)
    return votes


def _checked(co: Coalition, candidate: ModelRecord, signer: str, document: bytes) -> SignedVote | str:
    """The vote in `document`, or why the contract would refuse it."""
    try:
        vote = SignedVote.from_json(_json(document))
    except IntegrityError as exc:
        return str(exc)
    if vote.signer != signer:
        return f"it declares another signer, {vote.signer}"
    if vote.candidate != candidate.id or vote.model_hash != candidate.model_hash:
        return f"it is a vote on candidate {vote.candidate}, model {vote.model_hash.hex()}"
    if recover_signer(vote, co.client.domain) != signer:
        return "its signature is not its signer's for this coalition"
    refused = may_vote(candidate, co.client.get_member(signer))
    if refused is not None:
        return f"its signer is {refused}"
    if co.client.has_voted(candidate.id, signer):
        return "its signer already voted directly"
    return vote


def _json(document: bytes) -> object:
    try:
        return json.loads(document)
    except ValueError as exc:  # UnicodeDecodeError included
        raise IntegrityError(f"a signed vote that is not JSON: {exc}") from None


def decisive(votes: Sequence[SignedVote], eligible: int, *, approvals: int = 0, rejections: int = 0) -> bool:
    """Whether `votes`, added to the `approvals` and `rejections` already on chain, decide a candidate with
    `eligible` voters (as the contract's `decide` counts them)."""
    approving = approvals + sum(v.approve for v in votes)
    rejecting = rejections + sum(not v.approve for v in votes)
    return is_committed(approving, eligible) or is_rejected(rejecting, eligible)


def try_decide(co: Coalition, caller: LocalAccount, candidate: ModelRecord) -> VoteOutcome | None:
    """Sends every collected vote on `candidate` in one `decide` paid by `caller` once they decide it; None while
    they do not, or when the candidate is no longer open (decided, stale or expired meanwhile)."""
    current = co.client.get_model(candidate.id, with_uri=False)
    if current.state is not ModelState.OPEN:
        log.info("candidate %d is %s: its ballots are not needed", candidate.id, current.state.name.lower())
        return None
    votes = collected(co, current)
    if not decisive(votes, current.eligible, approvals=current.approvals, rejections=current.rejections):
        return None
    try:
        with co.clock("ledger"):
            return co.client.decide(caller, candidate.id, votes)
    except ContractRevert as exc:
        if exc.error not in RACES:
            raise
        log.info("candidate %d was settled meanwhile, its ballots are not needed: %s", candidate.id, exc)
        return None
