"""What the coalition duties work with: the hospitals (each with its key, data and behaviour), the ledger,
the vault, the coalition's model and policies, and a clock of where the time went."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from tclearn.coalition.policy import AcceptancePolicy, Scores
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData
from tclearn.learning.manifest import Manifest
from tclearn.learning.models import ModelConfig
from tclearn.learning.train import TrainConfig
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.directory import ChainDirectory
from tclearn.types import Variant
from tclearn.vault.store import BlobStore

if TYPE_CHECKING:
    from tclearn.he.client import SupervisorClient
    from tclearn.he.context import HEContext
    from tclearn.he.model import ModelSpec

PHASES = ("training", "evaluation", "ledger", "vault", "crypto")


@dataclass
class Hospital:
    name: str
    account: LocalAccount
    key: X25519PrivateKey  # its X25519 key: opens variant B models sealed for it
    train: ImageData
    local_test: ImageData  # L: what it validates candidates on, besides G
    manifest: Manifest
    attack: Attack = Attack.NONE
    he: HEMember | None = None  # variant C: its public CKKS context and its way to the supervisor

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def byzantine(self) -> bool:
        return self.attack is not Attack.NONE


@dataclass(frozen=True)
class HEMember:
    """What a hospital holds in variant C: the public context (never the secret key) and a supervisor client."""

    context: HEContext
    supervisor: SupervisorClient


@dataclass(frozen=True)
class HESettings:
    """A variant C coalition's encrypted model: its shape, the public context it lives under (the supervisor's
    key on chain), the supervisor's account, and how each increment is trained (full-batch steps)."""

    spec: ModelSpec
    context: str
    supervisor: str
    steps: int = 3
    lr: float = 1.0


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
    """One coalition as its duties see it."""

    client: LedgerClient
    store: BlobStore
    variant: Variant
    model: ModelConfig
    training: TrainConfig
    policy: AcceptancePolicy
    global_test: ImageData  # G
    hospitals: list[Hospital]
    clock: Clock = field(default_factory=Clock)
    head_scores: dict[tuple[str, int], Scores] = field(default_factory=dict)  # (validator, model id) -> scores
    directory: ChainDirectory | None = None
    he: HESettings | None = None  # variant C only; `model` is then unused (the model is `he.spec`)

    def hospital(self, address: str) -> Hospital:
        found = next((h for h in self.hospitals if h.address == address), None)
        if found is None:
            raise KeyError(f"{address} is not one of this coalition's hospitals")
        return found

    def name_of(self, address: str) -> str:
        found = next((h for h in self.hospitals if h.address == address), None)
        return found.name if found else address
