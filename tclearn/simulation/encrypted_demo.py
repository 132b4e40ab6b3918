"""The variant C demo: a coalition of hospitals with feature tables, an encrypted model and a supervisor.

Setup: the supervisor (its own account, `Role.SUPERVISOR`) makes the CKKS keys, publishes the public context
in the vault and encrypts the genesis logistic regression; the coalition is founded around that container
with the context hash as the supervisor's key on chain. Every hospital then fetches the public context by
that hash and gets an in-process supervisor client signed as itself: it never holds the secret key.

The final comparison: the supervisor decrypts the head (logged against its own account), and the baselines
(each honest hospital alone, all honest data pooled) are trained in plain numpy with the same number of
gradient steps, from the same genesis, with the same polynomial sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.encrypted_setup import (
    encrypted_coalition,
    encrypted_genesis,
    load_table,
    model_spec,
    supervisor_founder,
)
from tclearn.coalition.founding import Founder, found
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.context import Ciphertexts
from tclearn.he.duties import features
from tclearn.he.encrypted import load_model
from tclearn.he.model import Weights, accuracy, logits, train
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.learning.manifest import fingerprint
from tclearn.learning.models import ModelConfig
from tclearn.learning.tabular import GLOBAL_CSV, synth_tabular
from tclearn.learning.train import TrainConfig
from tclearn.ledger.chain import Chain
from tclearn.simulation.demo import byzantine_attack, check_keys, hospital_folders
from tclearn.state.db import Database
from tclearn.types import Variant
from tclearn.vault.envelope import public_bytes
from tclearn.vault.store import FsspecStore

if TYPE_CHECKING:
    from tclearn.simulation.demo import DemoSettings


@dataclass(frozen=True)
class EncryptedRun:
    """What only the demo (standing in for the supervisor's operator) holds: the supervisor and the genesis."""

    supervisor: Supervisor
    account: str
    genesis: Weights

    def head_weights(self, co: Coalition) -> Weights:
        """The head's plain weights, decrypted by the supervisor for the final comparison (logged)."""
        head_hash = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
        model = load_model(co.store, head_hash, self.supervisor.he)
        names = list(model.vectors)
        message = Ciphertexts.of(self.supervisor.he, [model.vectors[n] for n in names], head_hash)
        values = LocalSupervisorClient(self.supervisor, self.account).decrypt(message)
        return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}

    def score_table(self, co: Coalition, steps: int) -> dict[str, dict[str, float]]:
        """Accuracy of the coalition's head and of the same-budget baselines on G and every hospital's L."""
        settings = co.he
        assert settings is not None
        spec, lr = settings.spec, settings.lr
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


def setup_encrypted(settings: DemoSettings, chain: Chain, out: Path) -> tuple[Coalition, EncryptedRun]:
    root = settings.data
    if root is None:
        root = out / "data"
        synth_tabular(root, hospitals=settings.members, features=settings.features, seed=settings.seed)
    folders = hospital_folders(root, settings.members, Variant.C)
    check_keys(settings, chain)
    admin, accounts = chain.dev_keys[0], chain.dev_keys[1 : settings.members + 1]
    supervisor_account = chain.dev_keys[settings.members + 1]
    global_test = load_table(root / GLOBAL_CSV, settings.label_column)
    spec = model_spec(global_test)
    tables = [  # every table checked before anything is written
        tuple(load_table(folder / f"{split}.csv", settings.label_column, spec.features) for split in ("train", "test"))
        for folder in folders
    ]
    store = FsspecStore(f"file://{(out / 'vault').resolve()}")

    genesis = encrypted_genesis(store, spec, settings.seed)
    (out / "supervisor").mkdir(parents=True, exist_ok=True)
    database = Database(f"sqlite:///{(out / 'supervisor' / 'log.db').resolve()}")
    supervisor = Supervisor(genesis.secret, database, Limits(requests_per_minute=10_000))

    keys = [X25519PrivateKey.generate() for _ in accounts]  # registered as in A/B; unused in variant C
    founders = [Founder(a.address, public_bytes(k), f.name) for a, k, f in zip(accounts, keys, folders, strict=True)]
    founders.append(supervisor_founder(supervisor_account.address, genesis.context))
    client, _ = found(chain, admin, store, Variant.C, genesis.model_hash, founders)
    members = [
        (
            Hospital(
                folder.name,
                account,
                key,
                train_set,
                test_set,
                fingerprint(folder / "train.csv"),
                byzantine_attack(settings, i),
            ),
            LocalSupervisorClient(supervisor, account.address),
        )
        for i, (folder, account, key, (train_set, test_set)) in enumerate(
            zip(folders, accounts, keys, tables, strict=True)
        )
    ]
    co = encrypted_coalition(
        client,
        store,
        supervisor_account.address,
        global_test,
        members,
        model=ModelConfig(arch=settings.model),  # type: ignore[arg-type]  # unused: the model is `he.spec`
        training=TrainConfig(min_batch_size=settings.min_batch_size),
        policy=AcceptancePolicy(settings.tolerance_global, settings.tolerance_local),
        steps=settings.he_steps,
        lr=settings.he_lr,
        directory_ttl=60.0,
    )
    return co, EncryptedRun(supervisor, supervisor_account.address, genesis.weights)
