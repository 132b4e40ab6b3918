"""Decoded contract events, and a reader that scans logs in block batches from a persisted cursor.

The cursor (last handled block and log index) lives in a SQLAlchemy table, so a reader that is
stopped — cleanly or not — resumes with the first event it had not handled, never skipping one and
never handling one twice. Only blocks at least `confirmations` deep are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from sqlalchemy import BigInteger, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.errors import ConfigError
from tclearn.ledger.artifact import Artifact, load_artifact
from tclearn.state.db import Base, Database


@dataclass(frozen=True)
class LedgerEvent:
    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    tx_hash: str = field(compare=False)

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


def _normalise(value: Any, type_: str) -> Any:
    if type_ == "address":
        return to_checksum_address(value)
    if type_.startswith("bytes") and isinstance(value, bytes | bytearray):
        return bytes(value)
    return value


def decode_log(log: Any, artifact: Artifact | None = None) -> LedgerEvent | None:
    """Decodes one raw log of the Coalition contract; None for a log of another contract's event."""
    artifact = artifact or load_artifact()
    topics = [bytes(t) for t in log["topics"]]
    spec = artifact.events.get(topics[0]) if topics else None
    if spec is None:
        return None
    indexed = [i for i in spec["inputs"] if i["indexed"]]
    plain = [i for i in spec["inputs"] if not i["indexed"]]
    args: dict[str, Any] = {}
    for item, topic in zip(indexed, topics[1:], strict=True):
        args[item["name"]] = _normalise(abi_decode([item["type"]], topic)[0], item["type"])
    values = abi_decode([i["type"] for i in plain], bytes(log["data"]))
    for item, value in zip(plain, values, strict=True):
        args[item["name"]] = _normalise(value, item["type"])
    return LedgerEvent(
        spec["name"],
        args,
        int(log["blockNumber"]),
        int(log["logIndex"]),
        "0x" + bytes(log["transactionHash"]).hex(),
    )


MAX_LOG_RANGE = 1000  # blocks per eth_getLogs: Besu's default cap (geth and Anvil allow more, none allows less)


def block_ranges(from_block: int, to_block: int, size: int = MAX_LOG_RANGE) -> Iterator[tuple[int, int]]:
    """[from_block, to_block] cut into consecutive ranges of at most `size` blocks."""
    start = max(from_block, 0)
    while start <= to_block:
        end = min(start + size - 1, to_block)
        yield start, end
        start = end + 1


def fetch_events(w3: Any, address: str, from_block: int, to_block: int, **topics: Any) -> list[LedgerEvent]:
    """Every Coalition event of `address` in [from_block, to_block], in chain order, read in ranges of at most
    `MAX_LOG_RANGE` blocks so that nodes which cap `eth_getLogs` (Besu: 1,000 blocks) serve a long chain."""
    artifact = load_artifact()
    decoded: list[LedgerEvent] = []
    for start, end in block_ranges(from_block, to_block):
        params: dict[str, Any] = {"address": address, "fromBlock": start, "toBlock": end, **topics}
        decoded += [e for e in (decode_log(log, artifact) for log in w3.eth.get_logs(params)) if e is not None]
    return sorted(decoded, key=lambda e: e.position)


def _kinds(names: set[str]) -> list[str]:
    """The topic (signature hash) of each event named in `names`."""
    return ["0x" + t.hex() for t, e in load_artifact().events.items() if e["name"] in names]


def events_about(w3: Any, address: str, names: set[str], subject: int, to_block: int) -> list[LedgerEvent]:
    """The events named `names` whose first indexed argument is `subject` (a model or proposal id), in chain
    order: the logs filtered by the node, not read whole."""
    return fetch_events(w3, address, 0, to_block, topics=[_kinds(names), "0x" + subject.to_bytes(32, "big").hex()])


def events_named(w3: Any, address: str, names: set[str], to_block: int) -> list[LedgerEvent]:
    """Every event named in `names` up to `to_block`, in chain order, filtered by the node."""
    return fetch_events(w3, address, 0, to_block, topics=[_kinds(names)])


_END_OF_BLOCK = 2**31 - 1  # a log index after every real one: the block is done


class EventCursor(Base):
    """Where a named reader stopped: the last handled (block, log index) on one contract."""

    __tablename__ = "event_cursors"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)  # chain ids outgrow 32 bits (the embedded chain's does)
    contract: Mapped[str] = mapped_column(String(42))
    block: Mapped[int] = mapped_column(Integer)  # -1: nothing handled yet
    log_index: Mapped[int] = mapped_column(Integer)


class EventReader:
    """Reads a contract's events in block batches, resuming from a cursor persisted in `db`."""

    def __init__(
        self,
        w3: Any,
        address: str,
        chain_id: int,
        db: Database,
        name: str,
        *,
        start_block: int = 0,
        confirmations: int = 0,
        batch_size: int = MAX_LOG_RANGE,
    ) -> None:
        if confirmations < 0:
            raise ConfigError(f"confirmations must be >= 0, got {confirmations}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.w3, self.address, self.chain_id, self.db, self.name = w3, address, chain_id, db, name
        self.confirmations, self.batch_size = confirmations, batch_size
        with db.session() as s:
            cursor = s.get(EventCursor, name)
            if cursor is None:
                s.add(EventCursor(name=name, chain_id=chain_id, contract=address, block=start_block - 1, log_index=-1))
            elif (cursor.chain_id, cursor.contract.lower()) != (chain_id, address.lower()):
                raise ConfigError(
                    f"event cursor {name!r} belongs to contract {cursor.contract} "
                    f"on chain {cursor.chain_id}, "
                    f"not {address} on chain {chain_id}; use another state database or cursor name"
                )

    @property
    def position(self) -> tuple[int, int]:
        with self.db.session() as s:
            cursor = s.execute(select(EventCursor).where(EventCursor.name == self.name)).scalar_one()
            return (cursor.block, cursor.log_index)

    def _save(self, position: tuple[int, int]) -> None:
        with self.db.session() as s:
            cursor = s.get(EventCursor, self.name)
            assert cursor is not None
            cursor.block, cursor.log_index = position

    def _safe_head(self) -> int:
        return int(self.w3.eth.block_number) - self.confirmations

    def _after(self, done: tuple[int, int], safe_head: int) -> Iterator[LedgerEvent]:
        for start, end in block_ranges(done[0], safe_head, self.batch_size):
            for ev in fetch_events(self.w3, self.address, start, end):
                if ev.position > done:
                    yield ev

    def pending(self) -> list[LedgerEvent]:
        """Events after the cursor up to the confirmed head (does not move the cursor)."""
        return list(self._after(self.position, self._safe_head()))

    def poll(self, handler: Callable[[LedgerEvent], None]) -> int:
        """Hands every new confirmed event to `handler`, moving the cursor past each one it handled.

        If `handler` raises, the cursor stays before that event and the error propagates: the next
        poll (in this process or after a restart) starts with that same event. After a complete poll
        the cursor moves to the end of the confirmed head, so empty blocks are not read again.
        """
        done, safe_head = self.position, self._safe_head()
        count = 0
        for ev in self._after(done, safe_head):
            handler(ev)
            self._save(ev.position)
            count += 1
        if safe_head > done[0]:
            self._save((safe_head, _END_OF_BLOCK))
        return count
