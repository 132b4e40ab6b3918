"""The node's duty table: which duty a candidate's state owes a node, case by case."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tclearn.coalition.dispatch import Duty, decide, may_vote, settled
from tclearn.types import Member, ModelRecord, ModelState, Role

ME, GENERAL, PROPOSER = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
NOW = 1_000
VALIDATOR = Member(ME, Role.MEMBER | Role.VALIDATOR, True, b"\0" * 32, "me", 1, 0, 1)


def candidate(
    state: ModelState,
    *,
    general: str = GENERAL,
    parent: int = 4,
    general_deadline: int = NOW + 10,
    voting_deadline: int = NOW + 100,
) -> ModelRecord:
    return ModelRecord(
        id=7,
        parent_id=parent,
        model_hash=b"\1" * 32,
        metadata_hash=b"\2" * 32,
        proposer=PROPOSER,
        general=general,
        state=state,
        eligible=3,
        approvals=0,
        rejections=0,
        general_deadline=general_deadline,
        voting_deadline=voting_deadline,
    )


S, O = ModelState.SUBMITTED, ModelState.OPEN

TABLE = [
    # (candidate, me, voted, duty)
    (candidate(S, general=ME), VALIDATOR, False, Duty.OPEN),
    (candidate(S), VALIDATOR, False, Duty.NONE),  # someone else is the general
    (candidate(S, general=ME, general_deadline=NOW - 1), VALIDATOR, False, Duty.KEEP),  # too late to open
    (candidate(S, general_deadline=NOW - 1), None, False, Duty.KEEP),  # anyone keeps deadlines
    (candidate(S, general=ME, general_deadline=NOW), VALIDATOR, False, Duty.OPEN),  # the deadline itself is in time
    (candidate(O), VALIDATOR, False, Duty.VOTE),
    (candidate(O, general=ME), VALIDATOR, False, Duty.VOTE),  # the general votes too
    (candidate(O), VALIDATOR, True, Duty.NONE),  # never twice
    (candidate(O, voting_deadline=NOW - 1), VALIDATOR, False, Duty.KEEP),
    (candidate(O, voting_deadline=NOW - 1), VALIDATOR, True, Duty.KEEP),
    (candidate(O), None, False, Duty.NONE),  # not a member
    (candidate(O), replace(VALIDATOR, roles=Role.MEMBER), False, Duty.NONE),
    (candidate(O), replace(VALIDATOR, active=False), False, Duty.NONE),
    (candidate(O), replace(VALIDATOR, validator_since=8), False, Duty.NONE),  # joined after this candidate
    (candidate(O), replace(VALIDATOR, address=PROPOSER), False, Duty.NONE),  # its own candidate
    (candidate(O, parent=3), VALIDATOR, False, Duty.NONE),  # stale: the head moved on
    (candidate(S, parent=3, general=ME), VALIDATOR, False, Duty.NONE),
    (candidate(S, parent=3, general_deadline=NOW - 1), VALIDATOR, False, Duty.NONE),
    (candidate(ModelState.COMMITTED), VALIDATOR, False, Duty.NONE),
    (candidate(ModelState.REJECTED, voting_deadline=NOW - 1), VALIDATOR, False, Duty.NONE),
    (candidate(ModelState.EXPIRED), VALIDATOR, False, Duty.NONE),
    (candidate(ModelState.STALE), VALIDATOR, False, Duty.NONE),
]


@pytest.mark.parametrize(("record", "me", "voted", "duty"), TABLE)
def test_duty_table(record: ModelRecord, me: Member | None, voted: bool, duty: Duty) -> None:
    address = me.address if me is not None else ME
    assert decide(record, 4, address, me, NOW, voted).duty is duty


def test_settled_and_reasons() -> None:
    assert not settled(candidate(O), 4) and settled(candidate(O), 5) and settled(candidate(ModelState.COMMITTED), 4)
    assert decide(candidate(O, parent=3), 4, ME, VALIDATOR, NOW, False).reason == "stale (head is 4)"
    assert may_vote(candidate(O), replace(VALIDATOR, address=PROPOSER)) == "its proposer"
    assert may_vote(candidate(O), VALIDATOR) is None
    assert "already voted" in decide(candidate(O), 4, ME, VALIDATOR, NOW, True).reason
