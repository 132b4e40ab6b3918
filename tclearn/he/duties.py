"""What the coalition duties call in variant C: train an increment, score a candidate, predict.

Members and validators hold only the public context (`keys.fetch_context`) and encrypted models in the
vault; each function takes a `SupervisorClient` for the decryptions and refreshes it needs, which the
supervisor logs against the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tenseal as ts

from tclearn.errors import DataError, Overflow
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
from tclearn.he.model import step_size, weight_bounds
from tclearn.he.scaling import Scaling, combine
from tclearn.he.supervisor import Score
from tclearn.learning.data import ImageData
from tclearn.learning.samples import Samples
from tclearn.learning.tables import BINARY, read_table
from tclearn.vault.store import BlobStore


def features(data: Samples, source: str = "the data set") -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of a binary table (`tclearn.learning.tables.read_table`) as float64 arrays. A
    table may hold one class only (a site's skewed case mix): it is scored by recall or specificity."""
    if not isinstance(data, ImageData):
        raise DataError(f"{source} is not a feature table held in memory; encrypted models train on CSV tables")
    if data.images.ndim != 2 or data.classes != BINARY:
        raise DataError(
            f"{source} is not a binary feature table (classes {', '.join(data.classes)}, shape "
            f"{tuple(data.images.shape)}); encrypted models are binary classifiers on feature vectors"
        )
    return data.images.numpy().astype(np.float64), data.targets.numpy().astype(np.float64)


def load_features(path: str | Path, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of a binary CSV table (raw values: the model's scaling applies them)."""
    table = read_table(path, label_column)
    return table.x, table.y


def weight_message(he: HEContext, model: EncryptedModel, ref: str, *, bounded: bool) -> Ciphertexts:
    """The model's weight vectors as a supervisor request (with their bounds, for a refresh that projects)."""
    bounds = weight_bounds(model.spec)
    limits = [(bounds[n].norm, bounds[n].bias) for n in model.vectors] if bounded else []
    return Ciphertexts.of(he, list(model.vectors.values()), ref, limits)


def refresh(he: HEContext, model: EncryptedModel, client: SupervisorClient, model_ref: str = "") -> EncryptedModel:
    """The same weights, re-encrypted at full depth by the supervisor (one logged refresh) and projected onto the
    model's weight bounds on the way (`tclearn.he.model.project`)."""
    message = client.refresh(weight_message(he, model, model_ref, bounded=True))
    return EncryptedModel(model.spec, model.context, dict(zip(model.vectors, message.load(he), strict=True)))


def range_problem(he: HEContext, model: EncryptedModel, client: SupervisorClient, ref: str) -> str | None:
    """What is wrong with the model's range assumption (a weight vector beyond its bound, measured by the
    supervisor, which reveals only each vector's norm and |bias|), or None."""
    measured = client.measure(weight_message(he, model, ref, bounded=False))
    bounds = weight_bounds(model.spec)
    for name, (norm, bias) in zip(model.vectors, measured, strict=True):
        bound = bounds[name]
        if norm > bound.norm * (1 + RANGE_SLACK) + RANGE_SLACK or bias > bound.bias * (1 + RANGE_SLACK) + RANGE_SLACK:
            return (
                f"weight vector {name!r} is beyond the range the polynomial sigmoid holds for: norm {norm:.4g} "
                f"(bound {bound.norm:g}), |bias| {bias:.4g} (bound {bound.bias:g})"
            )
    return None


RANGE_SLACK = 1e-3
"""CKKS noise allowed over a bound (a projected vector decrypts within about 1e-5 of it)."""


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
    """`steps` full-batch steps from `model` (its hash `ref` names it in the supervisor's log), each of
    `model.step_size(lr, scaled rows)` and projected onto the weight bounds by the supervisor's refreshes; the
    result is refreshed to full depth (`tclearn.he.model.train` is the plain twin). Every step uses up the depth
    of a fresh ciphertext, so each starts with a refresh (but for a fresh model), and an mlp step asks for two
    blinded refreshes inside (`gradient_step`):
    a logreg increment costs `steps` refresh requests, an mlp increment `3 * steps`.
    """
    if steps < 1:
        raise DataError(f"steps must be at least 1, got {steps}")
    inner = blinded_refresh(he, client, ref)
    rate = step_size(lr, model.spec.prepare(x))
    for step in range(1, steps + 1):
        try:
            model = gradient_step(he, with_levels(he, model, TRAINING_LEVELS, client, ref), x, y, rate, inner)
        except Overflow as exc:
            raise _overflow(exc, f"encrypted training step {step} of {steps} (step size {rate:.4g})") from None
    try:
        return refresh(he, model, client, ref)
    except Overflow as exc:
        raise _overflow(exc, f"the refresh after encrypted training step {steps}") from None


def _overflow(exc: Overflow, where: str) -> Overflow:
    return Overflow(
        f"{where} overflowed: {exc}. The logits left the range the polynomial sigmoid holds for; what fixes it: "
        "train on the coalition's scaled features (a model founded with a scaling, docs/he.md 'Your own table'), "
        "or a smaller [he] lr",
        **exc.details,
    )


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


def _encrypt_chunks(he: HEContext, values: np.ndarray) -> list[ts.CKKSVector]:
    """`values` in ciphertexts of at most one slot count each (fresh: dropping levels would cost precision, about
    4e-4 at level 0, more than the moments of a narrow column can lose)."""
    slots = he.params.slots
    return [he.encrypt(values[start : start + slots]) for start in range(0, len(values), slots)]


def _aggregate(he: HEContext, client: SupervisorClient, parts: Sequence[np.ndarray], what: str) -> np.ndarray:
    """The sum of the sites' plain statistics, each encrypted by its site, decrypted by the supervisor only as
    their sum."""
    messages = [Ciphertexts.of(he, _encrypt_chunks(he, part), what) for part in parts]
    return np.concatenate([np.asarray(v) for v in client.aggregate(messages)])


def agree_scaling(
    he: HEContext,
    columns: Sequence[str],
    tables: Sequence[np.ndarray],
    client: SupervisorClient,
    *,
    robust: bool = True,
    whiten: bool = True,
    names: Sequence[str] = (),
) -> Scaling:
    """The coalition's feature scaling from the sites' raw training rows (`tables`, one per site; each site's
    statistics are computed and encrypted from its rows alone, here in one process for a simulation or a
    founding script), the supervisor decrypting only their sums (`scaling.combine`: three rounds)."""

    def add(parts: list[np.ndarray], what: str) -> np.ndarray:
        return _aggregate(he, client, parts, f"scaling:{what}")

    return combine(columns, tables, add, robust=robust, whiten=whiten, names=names)
