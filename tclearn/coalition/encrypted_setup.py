"""How a variant C coalition is put together, for the in-process demo and for the services alike.

Founding: the supervisor makes the CKKS keys, publishes the public context in the vault and stores the
encrypted genesis (`encrypted_genesis`); it is founded as `Role.SUPERVISOR` with the context hash as its key
on chain (`supervisor_founder`). Joining: every hospital reads its feature tables (`load_table`, checked for
shape and scale), fetches the public context the supervisor registered on chain (re-hashed by the store)
and gets a supervisor client of its own (`encrypted_coalition`); it never holds the secret key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tclearn.coalition.context import Coalition, HEMember, HESettings, Hospital
from tclearn.coalition.encrypted import public_context, registered_context
from tclearn.coalition.founding import Founder
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError, DataError
from tclearn.he.client import SupervisorClient
from tclearn.he.context import HEContext
from tclearn.he.duties import features
from tclearn.he.encrypted import compact, encrypt_model, store_model
from tclearn.he.keys import generate, key_bytes32, publish_context
from tclearn.he.model import ModelSpec, Weights, init_weights
from tclearn.learning.data import ImageData, load_csv
from tclearn.learning.models import ModelConfig
from tclearn.learning.train import TrainConfig
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.directory import ChainDirectory
from tclearn.types import Role, Variant
from tclearn.vault.store import BlobStore

MAX_FEATURE = 10.0  # the polynomial sigmoid fits logits in [-5, 5]: features must be standardised


def load_table(path: Path, label_column: str, columns: int | None = None) -> ImageData:
    """A binary feature table with `columns` features (if given), or a `DataError` naming the file now."""
    data = load_csv(path, label_column)
    x, _ = features(data, repr(str(path)))
    if columns is not None and x.shape[1] != columns:
        raise DataError(f"{str(path)!r} has {x.shape[1]} feature columns; global.csv has {columns}")
    if np.abs(x).max() > MAX_FEATURE:
        raise DataError(
            f"{str(path)!r} holds feature values up to {np.abs(x).max():.4g}; encrypted training needs standardised "
            f"features (|value| <= {MAX_FEATURE:g})"
        )
    return data


def model_spec(global_test: ImageData) -> ModelSpec:
    """The coalition's encrypted model: a logistic regression over G's feature columns."""
    return ModelSpec("logreg", int(global_test.images.shape[1]))


@dataclass(frozen=True)
class EncryptedGenesis:
    """What the supervisor made at founding: its secret context, the public context's hash, the genesis."""

    secret: HEContext
    context: str
    weights: Weights
    model_hash: str


def encrypted_genesis(store: BlobStore, spec: ModelSpec, seed: int) -> EncryptedGenesis:
    """New CKKS keys, the public context published in `store`, the genesis model encrypted and stored."""
    secret, public = generate()
    context = publish_context(store, public)
    weights = init_weights(spec, seed)
    model_hash = store_model(store, compact(secret, encrypt_model(secret, spec, weights)))
    return EncryptedGenesis(secret, context, weights, model_hash)


def supervisor_founder(address: str, context: str) -> Founder:
    """The supervisor as a founder: its on-chain key is the public context's hash."""
    return Founder(address, key_bytes32(context), "supervisor", Role.SUPERVISOR)


def find_supervisor(client: LedgerClient) -> str:
    """The coalition's one active supervisor, read from the contract."""
    found = [m.address for m in client.members() if m.active and Role.SUPERVISOR in m.roles]
    if len(found) != 1:
        raise ConfigError(f"a variant C coalition needs exactly one active supervisor on chain; it has {len(found)}")
    return str(found[0])


def encrypted_coalition(
    client: LedgerClient,
    store: BlobStore,
    supervisor: str,
    global_test: ImageData,
    members: Sequence[tuple[Hospital, SupervisorClient]],
    *,
    model: ModelConfig,
    training: TrainConfig,
    policy: AcceptancePolicy,
    steps: int,
    lr: float,
    directory_ttl: float,
) -> Coalition:
    """The coalition as its hospitals see it: each holds the public context the supervisor registered on chain
    (fetched by that hash) and its own supervisor client. `model` is unused (the model is `he.spec`)."""
    hospitals = [
        dataclasses.replace(hospital, he=HEMember(public_context(client, store, supervisor), supervisor_client))
        for hospital, supervisor_client in members
    ]
    return Coalition(
        client,
        store,
        Variant.C,
        model,
        training,
        policy,
        global_test,
        hospitals,
        directory=ChainDirectory(client, ttl=directory_ttl),
        he=HESettings(model_spec(global_test), registered_context(client, supervisor), supervisor, steps, lr),
    )
