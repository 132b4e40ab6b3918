"""What the coalition duties work with: the hospitals (each with its key, data and behaviour), the ledger,
the vault, the coalition's model backend and acceptance policy, and a clock of where the time went."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tclearn.coalition.backend import ModelBackend, tensors
from tclearn.coalition.hospital import Clock, Hospital
from tclearn.coalition.policy import AcceptancePolicy, Lineage, Scores
from tclearn.errors import NotFoundError
from tclearn.learning.samples import Samples
from tclearn.learning.train import TrainConfig
from tclearn.learning.watermark import MarkKey
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.ledger import Ledger
from tclearn.types import VoteMode
from tclearn.vault.store import BlobStore

PHASES = ("training", "evaluation", "ledger", "vault", "crypto")


@dataclass
class Coalition:
    """One coalition as its duties see it: exactly one model backend, chosen when it was built."""

    client: Ledger  # the contract, or the in-memory ledger of unit tests
    store: BlobStore  # the vault: model blobs (through the backend) and the JSON records of every round
    backend: ModelBackend[Any]
    policy: AcceptancePolicy
    global_test: Samples  # G
    hospitals: list[Hospital]
    directory: ChainDirectory
    head_scores: dict[tuple[str, int], Scores] = field(default_factory=dict)  # (validator, model id) -> scores
    lineage: dict[tuple[str, int], Lineage] = field(default_factory=dict)  # (validator, head) -> its lineage
    votes: VoteMode = VoteMode.SIGNED  # how this site's validators' votes reach the chain
    watermark: MarkKey | None = None  # the coalition's watermark key, read and checked against the policy's commitment

    @property
    def clock(self) -> Clock:
        """Where the time went; the backend's clock, so that storing and training count in the same place."""
        clock: Clock = self.backend.clock
        return clock

    def trained_with(self, training: TrainConfig) -> Coalition:
        """The same coalition whose members train with `training` (models in tensors only), the coalition's
        watermark written as the policy says."""
        training = marked(training, self.policy, self.watermark)
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
            raise NotFoundError(f"{address} is not one of the hospitals this process acts for")
        return found

    def name_of(self, address: str) -> str:
        found = next((h for h in self.hospitals if h.address == address), None)
        return found.name if found else address


def marked(training: TrainConfig, policy: AcceptancePolicy, key: MarkKey | None) -> TrainConfig:
    """`training` writing the coalition's watermark `key` at the policy's strength (no mark without a key)."""
    if key is None or policy.watermark is None:
        return dataclasses.replace(training, marks=())
    return dataclasses.replace(training, marks=(key,), mark_strength=policy.watermark.strength)
