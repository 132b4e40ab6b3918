"""`Refreshed`: a chain read served from a snapshot, re-read by one caller at a time while the others go on.

The directory case runs on a real (embedded) chain: while one request re-reads the member registry, another
request is answered from the snapshot at once instead of queueing behind the chain read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.snapshot import Refreshed
from tests.conftest import deploy_coalition


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class GatedReads:
    """`read(previous)` that counts its calls and, once `gate` is armed, waits until the test opens it."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered, self.gate = threading.Event(), threading.Event()
        self.gate.set()

    def __call__(self, previous: int | None) -> int:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return self.calls


def in_thread(action: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()
    return thread, result


def test_reads_once_per_ttl() -> None:
    clock, reads = Clock(), GatedReads()
    value = Refreshed(reads, ttl=5.0, clock=clock)
    assert not value.fresh
    assert [value.get(), value.get()] == [1, 1]
    assert value.fresh
    clock.now = 4.9
    assert value.get() == 1
    clock.now = 5.0
    assert not value.fresh
    assert value.get() == 2
    assert reads.calls == 2


def test_zero_ttl_reads_every_time() -> None:
    reads = GatedReads()
    value = Refreshed(reads, ttl=0.0)
    assert [value.get(), value.get(), value.get()] == [1, 2, 3]


def test_the_previous_value_is_handed_to_the_read() -> None:
    seen: list[int | None] = []

    def read(previous: int | None) -> int:
        seen.append(previous)
        return len(seen)

    value = Refreshed(read, ttl=0.0)
    value.get()
    value.get()
    assert seen == [None, 1]


def test_others_get_the_snapshot_while_one_re_reads() -> None:
    clock, reads = Clock(), GatedReads()
    value = Refreshed(reads, ttl=1.0, clock=clock)
    assert value.get() == 1
    clock.now = 2.0  # stale
    reads.gate.clear()
    reads.entered.clear()
    refresher, refreshed = in_thread(value.get)
    assert reads.entered.wait(10)  # the re-read is under way and blocked
    assert value.get() == 1  # answered from the snapshot at once, not queued behind the re-read
    assert value.get() == 1
    assert reads.calls == 2  # one re-read, however many callers
    reads.gate.set()
    refresher.join(10)
    assert refreshed == [2]
    assert value.get() == 2


def test_the_first_read_blocks_everyone_until_there_is_a_value() -> None:
    reads = GatedReads()
    value = Refreshed(reads, ttl=60.0)
    reads.gate.clear()
    first, got_first = in_thread(value.get)
    assert reads.entered.wait(10)
    second, got_second = in_thread(value.get)
    second.join(0.2)
    assert second.is_alive()  # nothing to serve yet: it waits for the first read
    reads.gate.set()
    first.join(10)
    second.join(10)
    assert got_first == got_second == [1]
    assert reads.calls == 1


def test_a_failed_re_read_keeps_the_snapshot_and_is_retried() -> None:
    clock, fail = Clock(), [False]

    def read(previous: int | None) -> int:
        if fail[0]:
            raise ConnectionError("chain down")
        return (previous or 0) + 1

    value = Refreshed(read, ttl=1.0, clock=clock)
    assert value.get() == 1
    clock.now, fail[0] = 2.0, True
    with pytest.raises(ConnectionError):
        value.get()
    fail[0] = False
    assert value.get() == 2


def test_a_directory_answers_while_the_registry_is_re_read() -> None:
    co = deploy_coalition(embedded_chain(8), validators=2, members=1)
    member = co.hospitals[0].address
    gate, entered = threading.Event(), threading.Event()
    real_members = co.client.members

    def slow_members() -> Any:
        entered.set()
        assert gate.wait(10)
        return real_members()

    directory = ChainDirectory(co.client, ttl=0.0)
    assert directory.is_active_member(member)  # the first read: a snapshot to serve from
    co.client.members = slow_members  # type: ignore[method-assign]
    refresher, refreshed = in_thread(lambda: directory.is_active_member(member))
    assert entered.wait(10)
    assert directory.is_active_member(member)  # served from the snapshot while the registry is being read
    assert not directory.is_active_member(co.spare[0].address)
    gate.set()
    refresher.join(10)
    assert refreshed == [True]
