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


SUB, OPN = ModelState.SUBMITTED, ModelState.OPEN

TABLE = [
    # (candidate, me, voted, duty)
    (candidate(SUB, general=ME), VALIDATOR, False, Duty.OPEN),
    (candidate(SUB), VALIDATOR, False, Duty.NONE),  # someone else is the general
    (candidate(SUB, general=ME, general_deadline=NOW - 1), VALIDATOR, False, Duty.KEEP),  # too late to open
    (candidate(SUB, general_deadline=NOW - 1), None, False, Duty.KEEP),  # anyone keeps deadlines
    (candidate(SUB, general=ME, general_deadline=NOW), VALIDATOR, False, Duty.OPEN),  # the deadline itself is in time
    (candidate(OPN), VALIDATOR, False, Duty.VOTE),
    (candidate(OPN, general=ME), VALIDATOR, False, Duty.VOTE),  # the general votes too
    (candidate(OPN), VALIDATOR, True, Duty.NONE),  # never twice
    (candidate(OPN, voting_deadline=NOW - 1), VALIDATOR, False, Duty.KEEP),
    (candidate(OPN, voting_deadline=NOW - 1), VALIDATOR, True, Duty.KEEP),
    (candidate(OPN), None, False, Duty.NONE),  # not a member
    (candidate(OPN), replace(VALIDATOR, roles=Role.MEMBER), False, Duty.NONE),
    (candidate(OPN), replace(VALIDATOR, active=False), False, Duty.NONE),
    (candidate(OPN), replace(VALIDATOR, validator_since=8), False, Duty.NONE),  # joined after this candidate
    (candidate(OPN), replace(VALIDATOR, address=PROPOSER), False, Duty.NONE),  # its own candidate
    (candidate(OPN, parent=3), VALIDATOR, False, Duty.NONE),  # stale: the head moved on
    (candidate(SUB, parent=3, general=ME), VALIDATOR, False, Duty.NONE),
    (candidate(SUB, parent=3, general_deadline=NOW - 1), VALIDATOR, False, Duty.NONE),
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
    assert not settled(candidate(OPN), 4) and settled(candidate(OPN), 5) and settled(candidate(ModelState.COMMITTED), 4)
    assert decide(candidate(OPN, parent=3), 4, ME, VALIDATOR, NOW, False).reason == "stale (head is 4)"
    assert may_vote(candidate(OPN), replace(VALIDATOR, address=PROPOSER)) == "its proposer"
    assert may_vote(candidate(OPN), VALIDATOR) is None
    assert "already voted" in decide(candidate(OPN), 4, ME, VALIDATOR, NOW, True).reason
