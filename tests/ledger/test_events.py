"""The event reader: batches, confirmations, and an exact resume after a restart or a failing handler."""

from __future__ import annotations

import os

import pytest

from tclearn.errors import ConfigError
from tclearn.ledger.events import EventReader, LedgerEvent
from tclearn.state.db import Database
from tests.conftest import Coalition


def _reader(co: Coalition, db: Database, **kw: object) -> EventReader:
    return EventReader(co.chain.w3, co.client.address, co.chain.chain_id, db, "test", **kw)  # type: ignore[arg-type]


def test_reader_resumes_exactly_after_a_restart(coalition: Coalition, tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    everything = coalition.client.events()
    seen: list[LedgerEvent] = []
    assert _reader(coalition, Database(url), batch_size=3).poll(seen.append) == len(everything)
    assert seen == everything
    mid = coalition.submit(coalition.hospitals[0])  # more history while the reader is "down"
    coalition.open(mid)
    restarted: list[LedgerEvent] = []
    _reader(coalition, Database(url), batch_size=3).poll(restarted.append)  # a new process, same database
    assert [e.name for e in restarted] == ["Submitted", "CandidateOpened"]
    assert _reader(coalition, Database(url)).poll(restarted.append) == 0


def test_failing_handler_leaves_the_event_for_the_next_poll(coalition: Coalition) -> None:
    db = Database("sqlite://")
    reader = _reader(coalition, db)
    handled: list[str] = []

    def flaky(ev: LedgerEvent) -> None:
        if ev.name == "MemberRegistered" and ev.args["name"] == "hospital-2" and "boom" not in handled:
            handled.append("boom")
            raise RuntimeError("handler crashed")
        handled.append(f"{ev.name}:{ev.args.get('name', '')}")

    with pytest.raises(RuntimeError):
        reader.poll(flaky)
    reader.poll(flaky)
    registered = [h for h in handled if h.startswith("MemberRegistered")]
    assert registered == [f"MemberRegistered:hospital-{i}" for i in range(4)]  # none lost, none twice


def test_confirmations_hold_back_recent_blocks(coalition: Coalition) -> None:
    reader = _reader(coalition, Database("sqlite://"), confirmations=2)
    latest = coalition.chain.latest_block()
    assert all(e.block_number <= latest - 2 for e in reader.pending())
    assert len(reader.pending()) < len(coalition.client.events())
    coalition.client.set_encryption_key(coalition.hospitals[0], os.urandom(32))
    coalition.client.set_encryption_key(coalition.hospitals[1], os.urandom(32))
    assert reader.pending() == [e for e in coalition.client.events() if e.block_number <= latest]


def test_cursor_of_another_contract_is_refused(coalition: Coalition) -> None:
    db = Database("sqlite://")
    _reader(coalition, db)
    with pytest.raises(ConfigError, match="belongs to contract"):
        EventReader(coalition.chain.w3, "0x" + "11" * 20, coalition.chain.chain_id, db, "test")


@pytest.mark.parametrize(("field", "value"), [("confirmations", -1), ("batch_size", 0)])
def test_reader_arguments_are_checked(coalition: Coalition, field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        _reader(coalition, Database("sqlite://"), **{field: value})
