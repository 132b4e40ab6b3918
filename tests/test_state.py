"""The local state database: one in-memory database across threads, clear errors for bad URLs."""

from __future__ import annotations

import threading

import pytest

from tclearn.errors import ConfigError
from tclearn.ledger.events import EventCursor
from tclearn.state.db import Database


def test_in_memory_database_is_shared_across_threads() -> None:
    db = Database("sqlite://")
    with db.session() as s:
        s.add(EventCursor(name="c", chain_id=1, contract="0x" + "00" * 20, block=7, log_index=0))
    seen: list[int] = []

    def read() -> None:
        with db.session() as s:
            cursor = s.get(EventCursor, "c")
            seen.append(cursor.block if cursor else -1)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [7]


def test_a_failing_transaction_writes_nothing() -> None:
    db = Database("sqlite://")
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(EventCursor(name="c", chain_id=1, contract="0x" + "00" * 20, block=7, log_index=0))
        s.flush()
        raise RuntimeError("crash mid-transaction")
    with db.session() as s:
        assert s.get(EventCursor, "c") is None


def test_bad_url_is_named() -> None:
    with pytest.raises(ConfigError, match="nosuchdb"):
        Database("nosuchdb://x")
