"""What the coalition duties work with: the hospitals (each with its key, data and behaviour), the ledger,
the vault, the coalition's model backend and acceptance policy, and a clock of where the time went."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from tclearn.coalition.policy import AcceptancePolicy, Scores
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData
from tclearn.learning.manifest import Manifest
from tclearn.learning.train import TrainConfig
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.ledger import Ledger
from tclearn.vault.store import BlobStore

if TYPE_CHECKING:
    from tclearn.coalition.backend import ModelBackend

PHASES = ("training", "evaluation", "ledger", "vault", "crypto")


@dataclass
class Hospital:
    name: str
    account: LocalAccount
    key: X25519PrivateKey  # its X25519 key, registered on chain: sealed (variant B) models are wrapped for it
    train: ImageData
    local_test: ImageData  # L: what it validates candidates on, besides G
    manifest: Manifest
    attack: Attack = Attack.NONE

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def byzantine(self) -> bool:
        return self.attack is not Attack.NONE


@dataclass
class Clock:
    """Seconds spent per phase; `with clock("ledger"):` adds to a phase."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started


@dataclass
class Coalition:
    """One coalition as its duties see it: exactly one model backend, chosen when it was built."""

    client: Ledger  # the contract, or the in-memory ledger of unit tests
    store: BlobStore  # the vault: model blobs (through the backend) and the JSON records of every round
    backend: ModelBackend[Any]
    policy: AcceptancePolicy
    global_test: ImageData  # G
    hospitals: list[Hospital]
    directory: ChainDirectory
    head_scores: dict[tuple[str, int], Scores] = field(default_factory=dict)  # (validator, model id) -> scores

    @property
    def clock(self) -> Clock:
        """Where the time went; the backend's clock, so that storing and training count in the same place."""
        clock: Clock = self.backend.clock
        return clock

    def trained_with(self, training: TrainConfig) -> Coalition:
        """The same coalition whose members train with `training` (models in tensors only)."""
        from tclearn.coalition.backend import tensors

        return dataclasses.replace(
            self, backend=dataclasses.replace(tensors(self.backend, "training"), training=training)
        )

    def timed_by(self, clock: Clock) -> Coalition:
        """The same coalition with its time counted on `clock` (a training job's own phase timings)."""
        backend = copy.copy(self.backend)
        backend.clock = clock
        return dataclasses.replace(self, backend=backend)

    def hospital(self, address: str) -> Hospital:
        found = next((h for h in self.hospitals if h.address == address), None)
        if found is None:
            raise KeyError(f"{address} is not one of this coalition's hospitals")
        return found

    def name_of(self, address: str) -> str:
        found = next((h for h in self.hospitals if h.address == address), None)
        return found.name if found else address
