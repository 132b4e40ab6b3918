"""The seen-nonce table replicas of one service share (`replay_store` = an SQLAlchemy URL in its settings).

The primary key refuses a second claim of a nonce, whichever replica makes it; expired rows are purged now and
then. Services open it with `open_replay_store`; clients never import this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Float, String, delete
from sqlalchemy.exc import IntegrityError as RowExists
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.state.db import Base, Database
from tclearn.vault.replay import MAX_NONCE_LENGTH, MemoryReplayStore, ReplayStore

PURGE_EVERY_S = 10.0


class SeenNonce(Base):
    __tablename__ = "signed_request_nonces"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(MAX_NONCE_LENGTH), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


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
