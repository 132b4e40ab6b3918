"""Follows a coalition's chain incrementally: new events are folded into a history kept in memory.

The `EventReader` cursor and every event it handed over are persisted in the same state database, so a
restarted auditor replays its stored events (no chain reads) and then reads only blocks it has not seen.
Each `refresh()` costs one `eth_blockNumber` call when nothing happened on chain.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import requests
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.errors import ChainUnreachable
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.events import EventReader, LedgerEvent
from tclearn.ledger.history import LedgerHistory, apply
from tclearn.state.db import Base, Database

_BYTES = "__bytes__"


class StoredEvent(Base):
    """One decoded contract event a follower has handled, under the follower's cursor name."""

    __tablename__ = "followed_events"

    reader: Mapped[str] = mapped_column(String(200), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    args: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(String(66))


def encode_args(args: dict[str, Any]) -> str:
    """Event arguments as JSON; bytes survive as {"__bytes__": hex}."""
    return json.dumps({k: {_BYTES: v.hex()} if isinstance(v, bytes) else v for k, v in args.items()})


def decode_args(text: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(text)
    return {k: bytes.fromhex(v[_BYTES]) if isinstance(v, dict) and _BYTES in v else v for k, v in raw.items()}


class ChainFollower:
    """The coalition's history as of the last `refresh()`, read once from the chain and then incrementally."""

    def __init__(
        self, client: LedgerClient, db: Database, *, start_block: int = 0, confirmations: int = 0, name: str = ""
    ) -> None:
        self.client, self.db = client, db
        self.name = name or f"auditor:{client.chain.chain_id}:{client.address}"
        self.reader = EventReader(
            client.w3,
            client.address,
            client.chain.chain_id,
            db,
            self.name,
            start_block=start_block,
            confirmations=confirmations,
        )
        self.history = LedgerHistory()
        self._lock = threading.Lock()
        for event in self.stored_events():
            apply(self.history, event)

    def stored_events(self) -> list[LedgerEvent]:
        """Every event this follower has handled so far, in chain order."""
        query = (
            select(StoredEvent)
            .where(StoredEvent.reader == self.name)
            .order_by(StoredEvent.block, StoredEvent.log_index)
        )
        with self.db.session() as s:
            return [LedgerEvent(r.name, decode_args(r.args), r.block, r.log_index, r.tx_hash) for r in s.scalars(query)]

    def _handle(self, event: LedgerEvent) -> None:
        with self.db.session() as s:  # merge: an event stored just before a crash, whose cursor move was lost
            s.merge(
                StoredEvent(
                    reader=self.name,
                    block=event.block_number,
                    log_index=event.log_index,
                    name=event.name,
                    args=encode_args(event.args),
                    tx_hash=event.tx_hash,
                )
            )
        apply(self.history, event)

    def refresh(self) -> LedgerHistory:
        """Reads the events confirmed since the last call; returns a copy of the history that later calls leave be."""
        with self._lock:
            try:
                self.reader.poll(self._handle)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise ChainUnreachable(f"the chain at {self.client.chain.kind} does not answer: {exc}") from None
            return copy.deepcopy(self.history)
