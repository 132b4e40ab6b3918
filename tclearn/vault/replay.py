"""The seen-nonce store of signed requests: in memory (one process), or an SQL table that replicas share.

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

from sqlalchemy import Float, String, delete
from sqlalchemy.exc import IntegrityError as RowExists
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.state.db import Base, Database

MAX_NONCE_LENGTH = 64
PURGE_EVERY_S = 10.0


class SeenNonce(Base):
    __tablename__ = "signed_request_nonces"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(MAX_NONCE_LENGTH), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


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


class SqlReplayStore:
    """Nonces in the `signed_request_nonces` table of `db`: the primary key refuses a second claim, whichever
    replica makes it. Expired rows are deleted every `PURGE_EVERY_S` seconds."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db, self.clock = db, clock
        self._purged = 0.0

    def claim(self, address: str, nonce: str, expires_at: float) -> bool:
        now = self.clock()
        if now - self._purged > PURGE_EVERY_S:
            with self.db.session() as session:
                session.execute(delete(SeenNonce).where(SeenNonce.expires_at < now))
            self._purged = now
        try:
            with self.db.session() as session:
                session.add(SeenNonce(address=address, nonce=nonce, expires_at=expires_at))
        except RowExists:
            return False
        return True


def open_replay_store(url: str | None) -> ReplayStore:
    """The store a service's `replay_store` setting names: an SQLAlchemy URL, or None for this process only."""
    return MemoryReplayStore() if url is None else SqlReplayStore(Database(url))
