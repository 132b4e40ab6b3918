"""The seen-nonce store of signed requests, in memory (one process); `replay_db.py` holds the SQL table that
replicas share, so that a client, which only signs, never loads SQLAlchemy.

A nonce is claimed once per signer until it expires (its timestamp plus the allowed clock skew: a later copy
is refused as stale anyway). Replicas of one service behind a load balancer give the same `replay_store`
database URL, so a request accepted by one is refused by every other.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

MAX_NONCE_LENGTH = 64


class ReplayStore(Protocol):
    def claim(self, address: str, nonce: str, expires_at: float) -> bool:
        """True the first time `address` uses `nonce` (until `expires_at`); False for a replay."""
        ...


class MemoryReplayStore:
    """Nonces seen by this process. A claim costs O(log n): expired nonces leave in expiry order (a heap), not
    by a scan of every nonce still remembered (150,000 at 500 requests/s and a 300 s window)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._expiries: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def claim(self, address: str, nonce: str, expires_at: float) -> bool:
        with self._lock:
            now = self.clock()
            while self._expiries and self._expiries[0][0] < now:
                _, key = heapq.heappop(self._expiries)
                self._seen.pop(key, None)
            key = (address, nonce)
            if key in self._seen:
                return False
            self._seen[key] = expires_at
            heapq.heappush(self._expiries, (expires_at, key))
            return True

    def __len__(self) -> int:
        return len(self._seen)
