"""What a simulation compares the coalition with, for models in tensors (variants A and B): each honest
hospital alone and all honest data pooled, trained from the same genesis with the coalition's budget
(the seed-001-style baselines), scored on G and every hospital's L beside the coalition's head.

`TensorReference` is one of the two references a simulation can hold (`tclearn.simulation.encrypted_demo`
has the other); each founds its coalition around its own genesis and knows how to score the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from torch import nn

from tclearn.coalition.backend import StateDict, TensorBackend, tensors
from tclearn.coalition.build import ConnectSupervisor
from tclearn.coalition.context import Coalition
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.learning.evaluate import evaluate
from tclearn.learning.models import ModelConfig
from tclearn.learning.samples import Samples, pooled
from tclearn.learning.train import train_increment
from tclearn.learning.watermark import new_key
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.types import Variant
from tclearn.vault.store import BlobStore


def _trained(backend: TensorBackend, start: StateDict, data: Samples, steps: int, seed: int) -> nn.Module:
    """A model trained from `start` on `data` for about `steps` optimisation steps."""
    per_epoch = max(1, len(data) // backend.training.batch_size)
    config = replace(backend.training, epochs=max(1, round(steps / per_epoch)), seed=seed)
    model = backend.network(start)
    model.load_state_dict(train_increment(model, data, config).weights)
    return model


def baselines(co: Coalition, genesis: StateDict, steps: int, seed: int) -> dict[str, nn.Module]:
    """Each honest hospital alone, and all honest hospitals' data pooled, with the coalition's training budget."""
    backend = tensors(co.backend, "baselines")
    honest = [h for h in co.hospitals if not h.byzantine]
    together = pooled([h.train for h in honest], [h.name for h in honest])
    models = {h.name: _trained(backend, genesis, h.train, steps, seed) for h in honest}
    models["centralized"] = _trained(backend, genesis, together, steps, seed)
    return models


def score_table(co: Coalition, models: dict[str, nn.Module]) -> dict[str, dict[str, float]]:
    """Each model's score on G and on every hospital's local test set L."""
    sets = {"G": co.global_test, **{h.name: h.local_test for h in co.hospitals}}
    roi = tensors(co.backend, "baselines").training.patch
    return {
        name: {s: round(evaluate(m, data, roi_size=roi).score, 4) for s, data in sets.items()}
        for name, m in models.items()
    }


@dataclass
class TensorReference:
    """Founds a coalition around an untrained MONAI network and compares its head with same-budget baselines."""

    variant: Variant
    model: ModelConfig
    seed: int
    with_baselines: bool = True  # False: score the head only (benches that compare runs, not baselines)
    watermark: bool = False  # found with a coalition watermark (a key drawn for the genesis)
    genesis: StateDict | None = None

    def found(
        self,
        chain: Chain,
        admin: LocalAccount,
        store: BlobStore,
        founders: Sequence[Founder],
        policy: AcceptancePolicy,
    ) -> LedgerClient:
        self.genesis = genesis_weights(self.model, self.seed)
        key = new_key(self.genesis, "coalition") if self.watermark else None
        client, _ = found(chain, admin, store, self.variant, self.genesis, founders, policy=policy, watermark=key)
        return client

    def connect(self) -> ConnectSupervisor | None:
        return None

    def score_table(self, co: Coalition, rounds: int, trainers: int) -> dict[str, dict[str, float]]:
        """The head after `rounds` rounds of `trainers` trainers each, and the baselines with as many steps."""
        assert self.genesis is not None, "found the coalition first"
        backend = tensors(co.backend, "baselines")
        head_hash = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
        head = backend.network(backend.open(co.hospitals[0], head_hash))
        if not self.with_baselines:
            return score_table(co, {"coalition": head})
        per_epoch = len(co.hospitals[0].train) // backend.training.batch_size
        steps = trainers * rounds * backend.training.epochs * per_epoch
        return score_table(co, {"coalition": head, **baselines(co, self.genesis, steps, self.seed)})

    def log(self) -> list[dict[str, Any]]:
        return []
