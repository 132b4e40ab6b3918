"""A value read from the chain and re-read at most every `ttl` seconds, without making readers queue.

Stale-while-revalidate: the first read blocks (there is nothing to serve yet); after that, the one caller
that finds the value stale re-reads it while every other caller is handed the current value at once. A
value is replaced whole, never half-updated, and a fresh value is returned without taking any lock, so a
busy service's requests never wait behind a chain read they did not make.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Refreshed(Generic[T]):
    """`read(previous)` (None the first time) at most every `ttl` seconds; one reader at a time."""

    def __init__(self, read: Callable[[T | None], T], ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._read, self._clock = read, clock
        self._current: tuple[T, float] | None = None  # (value, when it was read), swapped whole
        self._lock = threading.Lock()

    @property
    def fresh(self) -> bool:
        """True when `get()` would return at once without reading."""
        current = self._current
        return current is not None and self._clock() - current[1] < self.ttl

    def get(self) -> T:
        """The current value; re-read first only when it is stale and no other caller is re-reading it."""
        current = self._current
        if current is not None and self._clock() - current[1] < self.ttl:
            return current[0]
        if not self._lock.acquire(blocking=current is None):
            assert current is not None
            return current[0]  # another caller is re-reading: the value it replaces is at most one read old
        try:
            latest = self._current  # a caller that held the lock before us may have just read it
            if latest is None or self._clock() - latest[1] >= self.ttl:
                value = self._read(None if latest is None else latest[0])
                latest = (value, self._clock())
                self._current = latest
            return latest[0]
        finally:
            self._lock.release()
