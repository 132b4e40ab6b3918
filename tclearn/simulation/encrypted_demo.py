"""What a variant C simulation founds and compares with: a supervisor, its CKKS keys and the encrypted genesis.

Founding: the supervisor (its own account, `Role.SUPERVISOR`) makes the CKKS keys and publishes the public context
in the vault; the hospitals agree on the feature scaling (each encrypts its statistics, the supervisor decrypts
only their sums) and the supervisor encrypts the genesis logistic regression on that scaling; the coalition is
founded around that container with the context hash as the supervisor's key on chain. Every hospital gets an
in-process supervisor client signed as itself: it never holds the secret key.

The final comparison: the supervisor decrypts the head (logged against its own account), and the baselines
(each honest hospital alone, all honest data pooled) are trained in plain numpy with the same number of
gradient steps, from the same genesis, with the same polynomial sigmoid, scaling, step size and weight bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from tclearn.coalition.build import ConnectSupervisor
from tclearn.coalition.ckks import CkksBackend, EncryptedGenesis, SiteRows, encrypted_genesis, supervisor_founder
from tclearn.coalition.context import Coalition
from tclearn.coalition.founding import Founder, found
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.duties import features
from tclearn.he.encrypted import load_container
from tclearn.he.model import Weights, accuracy, logits, train
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.learning.samples import Samples
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.state.db import Database
from tclearn.types import Variant
from tclearn.vault.store import BlobStore


@dataclass
class EncryptedRun:
    """What only the simulation (standing in for the supervisor's operator) holds: the supervisor, its account
    and the genesis in clear."""

    global_test: Samples
    sites: SiteRows  # the founding's scaling round reads each site's training rows (only their sums decrypted)
    account: LocalAccount  # the supervisor's
    folder: Path  # the supervisor's log database lives here
    seed: int
    made: EncryptedGenesis | None = field(default=None, repr=False)
    service: Supervisor | None = field(default=None, repr=False)

    @property
    def genesis(self) -> Weights:
        assert self.made is not None, "found the coalition first"
        return self.made.weights

    @property
    def supervisor(self) -> Supervisor:
        assert self.service is not None, "found the coalition first"
        return self.service

    def found(
        self,
        chain: Chain,
        admin: LocalAccount,
        store: BlobStore,
        founders: Sequence[Founder],
        policy: AcceptancePolicy,
    ) -> LedgerClient:
        self.folder.mkdir(parents=True, exist_ok=True)
        database = Database(f"sqlite:///{(self.folder / 'log.db').resolve()}")

        def founding(secret: HEContext) -> LocalSupervisorClient:
            self.service = Supervisor(secret, database, Limits(requests_per_minute=10_000))
            return LocalSupervisorClient(self.service, "founding")

        self.made = encrypted_genesis(store, self.global_test, self.seed, self.sites, founding)
        everyone = [*founders, supervisor_founder(self.account.address, self.made.context)]
        client, _ = found(chain, admin, store, Variant.C, self.made.model_hash, everyone, policy=policy)
        return client

    def connect(self) -> ConnectSupervisor | None:
        return lambda hospital: LocalSupervisorClient(self.supervisor, hospital.address)

    def head_weights(self, co: Coalition) -> Weights:
        """The head's plain weights, decrypted by the supervisor for the final comparison (logged)."""
        he = self.supervisor.he
        head_hash = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
        model = load_container(co.store, head_hash, he)
        names = list(model.vectors)
        message = Ciphertexts.of(he, [model.vectors[n] for n in names], head_hash)
        values = LocalSupervisorClient(self.supervisor, self.account.address).decrypt(message)
        return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}

    def score_table(self, co: Coalition, rounds: int, trainers: int) -> dict[str, dict[str, float]]:
        """Accuracy of the coalition's head and of the same-budget baselines on G and every hospital's L."""
        backend = co.backend
        if not isinstance(backend, CkksBackend):
            raise ConfigError("an encrypted run compares an encrypted coalition only")
        spec, lr, steps = backend.spec, backend.lr, trainers * rounds * backend.steps
        honest = {h.name: features(h.train) for h in co.hospitals if not h.byzantine}
        pooled = np.vstack([x for x, _ in honest.values()]), np.concatenate([y for _, y in honest.values()])
        models = {"coalition": self.head_weights(co)}
        models.update({name: train(spec, self.genesis, x, y, steps, lr) for name, (x, y) in honest.items()})
        models["centralized"] = train(spec, self.genesis, *pooled, steps, lr)
        sets = {"G": features(co.global_test), **{h.name: features(h.local_test) for h in co.hospitals}}
        return {
            name: {s: round(accuracy(logits(spec, w, x), y), 4) for s, (x, y) in sets.items()}
            for name, w in models.items()
        }

    def log(self) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in self.supervisor.log(limit=100_000)]
