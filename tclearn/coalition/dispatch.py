"""Which duty a node owes a candidate: a pure function of the candidate's state, who the node is, the time and
whether it already voted. The node daemon (`tclearn.site.node`) asks it for every candidate it watches.

- Submitted, general deadline passed       -> keep (anyone may reassign the general or expire)
- Submitted, I am the general              -> open (integrity and policy checks, then `openCandidate`)
- Open, voting deadline passed             -> keep (expire)
- Open, I may vote and have not voted yet  -> vote
- anything else                            -> nothing (a candidate whose parent is no longer head is settled:
  it can never be opened or voted on again; its member rebases)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tclearn.types import Member, ModelRecord, ModelState, Role


class Duty(enum.StrEnum):
    NONE = "none"
    OPEN = "open"
    VOTE = "vote"
    KEEP = "keep"


@dataclass(frozen=True)
class Decision:
    duty: Duty
    reason: str


def settled(candidate: ModelRecord, head: int) -> bool:
    """True once nothing more can happen to `candidate`: final, or its parent is no longer the head."""
    return candidate.state.final or candidate.parent_id != head


def may_vote(candidate: ModelRecord, me: Member | None) -> str | None:
    """Why `me` may not vote on `candidate` (the contract's own rules), or None if it may."""
    if me is None:
        return "not a registered member"
    if not me.active or Role.VALIDATOR not in me.roles:
        return "not an active validator"
    if me.address == candidate.proposer:
        return "its proposer"
    if me.validator_since > candidate.id:
        return f"a validator only from model {me.validator_since} on"
    return None


def decide(candidate: ModelRecord, head: int, address: str, me: Member | None, now: int, voted: bool) -> Decision:
    """The duty the node of account `address` (on-chain record `me`) owes `candidate` at unix time `now`."""
    if settled(candidate, head):
        why = candidate.state.name.lower() if candidate.state.final else f"stale (head is {head})"
        return Decision(Duty.NONE, why)
    if candidate.state is ModelState.SUBMITTED:
        if now > candidate.general_deadline:
            return Decision(Duty.KEEP, "its general stayed silent past the deadline")
        if candidate.general == address:
            return Decision(Duty.OPEN, "I am its general")
        return Decision(Duty.NONE, "waiting for its general")
    if candidate.state is ModelState.OPEN:
        if now > candidate.voting_deadline:
            return Decision(Duty.KEEP, "its voting deadline passed")
        if voted:
            return Decision(Duty.NONE, "already voted")
        refused = may_vote(candidate, me)
        if refused is not None:
            return Decision(Duty.NONE, f"cannot vote: {refused}")
        return Decision(Duty.VOTE, "open and not voted yet")
    return Decision(Duty.NONE, f"state {candidate.state.name.lower()}")
