"""The machinery under the in-memory ledger: a chain clock, blocks, the event log and refusals.

`MemoryContract` is to `InMemoryLedger` what the EVM is to Coalition.sol: a transaction either runs
whole (its events mined into a new block, with a fake hash and no gas) or is refused, leaving nothing.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from eth_account.signers.local import LocalAccount

from tclearn.errors import ContractRevert
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.ledger import TxResult, checked_address
from tclearn.ledger.reverts import refusal

MEMORY_CHAIN_ID = 1337  # a development chain id: development keys are accepted on it

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="MemoryContract")


class MemoryChain:
    """The clock and block counter of an in-memory ledger; `advance_time` as on the embedded chain.

    `clock` gives the base time in unix seconds (default: frozen at creation, so tests decide when time
    passes); `advance_time` adds to it.
    """

    kind = "memory"
    embedded = True

    def __init__(self, chain_id: int = MEMORY_CHAIN_ID, clock: Callable[[], int] | None = None) -> None:
        start = int(time.time())
        self.chain_id = chain_id
        self._clock = clock or (lambda: start)
        self._offset = 0
        self.block = 0

    def timestamp(self) -> int:
        return self._clock() + self._offset

    def latest_block(self) -> int:
        return self.block

    def advance_time(self, seconds: int) -> None:
        self._offset += seconds
        self.block += 1


def transaction(method: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[C, P], R]:
    """One transaction at a time, starting with no pending events (a refused one leaves none behind)."""

    @functools.wraps(method)
    def run(self: C, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            self._pending = []
            return method(self, *args, **kwargs)

    return run


class MemoryContract:
    """A contract's address on a `MemoryChain`, its event log, and how its transactions are mined."""

    def __init__(self, chain: MemoryChain, deployer: LocalAccount, seed: bytes) -> None:
        self.chain = chain
        self.seed = seed
        digest = hashlib.sha256(b"%d:%s:%s" % (chain.chain_id, deployer.address.encode(), seed)).digest()
        self.address = checked_address("0x" + digest[:20].hex())
        self._lock = threading.RLock()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._log: list[LedgerEvent] = []

    def _emit(self, event: str, /, **args: Any) -> None:
        self._pending.append((event, args))

    def _mine(self) -> TxResult:
        """Puts the pending events in a new block, as one transaction."""
        self.chain.block += 1
        block = self.chain.block
        tx_hash = "0x" + hashlib.sha256(f"{self.address}:{block}".encode()).hexdigest()
        events = tuple(LedgerEvent(n, a, block, i, tx_hash) for i, (n, a) in enumerate(self._pending))
        self._pending = []
        self._log.extend(events)
        return TxResult(tx_hash=tx_hash, block_number=block, gas_used=0, events=events)

    def _refuse(self, action: str, error: str, /, **args: Any) -> ContractRevert:
        self._pending = []
        return refusal(action, error, args)

    def events(self, from_block: int = 0, to_block: int | None = None) -> list[LedgerEvent]:
        end = self.chain.block if to_block is None else to_block
        with self._lock:
            return [e for e in self._log if from_block <= e.block_number <= end]
