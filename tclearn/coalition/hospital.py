"""A hospital as the duties see it (its account, key, data and behaviour), and the clock of where time went.

Kept apart from the coalition context so that the model backends, which take both, sit below the context.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from tclearn.learning.attacks import Attack
from tclearn.learning.manifest import Manifest
from tclearn.learning.samples import Samples


@dataclass
class Hospital:
    name: str
    account: LocalAccount
    key: X25519PrivateKey  # its X25519 key, registered on chain: sealed (variant B) models are wrapped for it
    train: Samples
    local_test: Samples  # L: what it validates candidates on, besides G
    manifest: Manifest
    attack: Attack = Attack.NONE
    probe: Samples | None = None  # the set a simulated attacker tunes its attack on (the demo's: G)
    patients: tuple[str, ...] | None = None  # each training item's patient: DP's patient unit groups them

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
