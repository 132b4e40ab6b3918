"""What the coalition duties call in variant C: train an increment, score a candidate, predict.

Members and validators hold only the public context (`keys.fetch_context`) and encrypted models in the
vault; each function takes a `SupervisorClient` for the decryptions and refreshes it needs, which the
supervisor logs against the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tenseal as ts

from tclearn.errors import DataError
from tclearn.he.client import SupervisorClient
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.encrypted import (
    ENCRYPTED_INFERENCE_LEVELS,
    INFERENCE_LEVELS,
    TRAINING_LEVELS,
    EncryptedModel,
    Refresh,
    compact,
    gradient_step,
    load_container,
    logits,
    logits_encrypted,
    missing_levels,
    store_container,
)
from tclearn.he.supervisor import Score
from tclearn.learning.data import ImageData, load_csv
from tclearn.learning.samples import Samples
from tclearn.vault.store import BlobStore


def features(data: Samples, source: str = "the data set") -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of a binary table (`tclearn.learning.data.load_csv`) as float64 arrays."""
    if not isinstance(data, ImageData):
        raise DataError(f"{source} is not a feature table held in memory; encrypted models train on CSV tables")
    if data.images.ndim != 2 or len(data.classes) != 2:
        raise DataError(
            f"{source} is not a binary feature table ({len(data.classes)} classes, shape {tuple(data.images.shape)});"
            " encrypted models are binary classifiers on feature vectors"
        )
    return data.images.numpy().astype(np.float64), data.targets.numpy().astype(np.float64)


def load_features(path: str | Path, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of a binary CSV data set."""
    return features(load_csv(path, label_column), repr(str(path)))


def refresh(he: HEContext, model: EncryptedModel, client: SupervisorClient, model_ref: str = "") -> EncryptedModel:
    """The same weights, re-encrypted at full depth by the supervisor (one logged refresh)."""
    names = list(model.vectors)
    message = client.refresh(Ciphertexts.of(he, [model.vectors[n] for n in names], model_ref))
    return EncryptedModel(model.spec, model.context, dict(zip(names, message.load(he), strict=True)))


MASK_BOUND = 1024.0
"""Intermediate vectors (logits, residuals) go to the supervisor plus a uniform mask in [-MASK_BOUND, MASK_BOUND]."""


def blinded_refresh(he: HEContext, client: SupervisorClient, model_ref: str = "") -> Refresh:
    """Refresh of intermediate training vectors (one logged request per call) behind additive masks that the
    member draws and removes: the supervisor decrypts value + mask, never the value itself."""
    rng = np.random.default_rng()

    def run(vectors: list[ts.CKKSVector]) -> list[ts.CKKSVector]:
        masks = [rng.uniform(-MASK_BOUND, MASK_BOUND, v.size()) for v in vectors]
        masked = [v + he.encrypt(m) for v, m in zip(vectors, masks, strict=True)]
        fresh = client.refresh(Ciphertexts.of(he, masked, model_ref)).load(he)
        return [v - he.encrypt(m) for v, m in zip(fresh, masks, strict=True)]

    return run


def with_levels(
    he: HEContext, model: EncryptedModel, table: dict[str, dict[str, int]], client: SupervisorClient, ref: str
) -> EncryptedModel:
    return refresh(he, model, client, ref) if missing_levels(he, model, table) else model


def train_model(
    he: HEContext,
    model: EncryptedModel,
    x: np.ndarray,
    y: np.ndarray,
    client: SupervisorClient,
    *,
    steps: int = 1,
    lr: float = 0.5,
    ref: str = "",
) -> EncryptedModel:
    """`steps` full-batch steps from `model` (its hash `ref` names it in the supervisor's log); the result is
    refreshed to full depth. Every step uses up the depth of a fresh ciphertext, so each starts with a refresh
    (but for a fresh model), and an mlp step asks for two blinded refreshes inside (`gradient_step`):
    a logreg increment costs `steps` refresh requests, an mlp increment `3 * steps`.
    """
    if steps < 1:
        raise DataError(f"steps must be at least 1, got {steps}")
    inner = blinded_refresh(he, client, ref)
    for _ in range(steps):
        model = gradient_step(he, with_levels(he, model, TRAINING_LEVELS, client, ref), x, y, lr, inner)
    return refresh(he, model, client, ref)


def train_increment(
    store: BlobStore,
    he: HEContext,
    parent_hash: str,
    x: np.ndarray,
    y: np.ndarray,
    client: SupervisorClient,
    *,
    steps: int = 1,
    lr: float = 0.5,
    store_level: int | None = None,
) -> str:
    """`train_model` from the parent in the vault, then the candidate compacted (to `store_level` if given,
    see `compact`) and stored; returns its hash."""
    parent = load_container(store, parent_hash, he)
    trained = train_model(he, parent, x, y, client, steps=steps, lr=lr, ref=parent_hash)
    return store_container(store, compact(he, trained, store_level))


def encrypted_scores(
    store: BlobStore, he: HEContext, model_hash: str, x: np.ndarray, y: np.ndarray, client: SupervisorClient
) -> Score:
    """Accuracy of a stored candidate on labelled data: the supervisor sees label-signed logits and returns
    only the aggregate; the validator never sees a prediction."""
    return score_model(he, load_container(store, model_hash, he), x, y, client, model_hash)


def score_model(
    he: HEContext, model: EncryptedModel, x: np.ndarray, y: np.ndarray, client: SupervisorClient, ref: str
) -> Score:
    """Accuracy of an opened container (`ref`, its hash, names it in the supervisor's log), as above."""
    model = with_levels(he, model, INFERENCE_LEVELS, client, ref)
    margins = logits(he, model, x, signs=2.0 * y - 1.0)
    return client.score(Ciphertexts.of(he, [margins], ref))


def predict(store: BlobStore, he: HEContext, model_hash: str, x: np.ndarray, client: SupervisorClient) -> np.ndarray:
    """Logits of the member's own samples, decrypted by the supervisor (logged) for that member."""
    model = with_levels(he, load_container(store, model_hash, he), INFERENCE_LEVELS, client, model_hash)
    (values,) = client.decrypt(Ciphertexts.of(he, [logits(he, model, x)], model_hash))
    return np.asarray(values)


def predict_encrypted(
    store: BlobStore, he: HEContext, model_hash: str, columns: list[ts.CKKSVector], client: SupervisorClient
) -> np.ndarray:
    """Logits of samples the member encrypted itself (`encrypt_features`), decrypted by the supervisor."""
    model = with_levels(he, load_container(store, model_hash, he), ENCRYPTED_INFERENCE_LEVELS, client, model_hash)
    (values,) = client.decrypt(Ciphertexts.of(he, [logits_encrypted(he, model, columns)], model_hash))
    return np.asarray(values)
