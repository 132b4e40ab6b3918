"""Encrypted models: the vault container, inference on plain or encrypted features, encrypted training.

Container (deterministic; its sha256 is the model hash)::

    b"TCHE1\\n" | canonical JSON header | b"\\n" | the serialized CKKS vectors, one after the other

    header = {"format": "tclearn-he-model", "version": 1 or 2, "model": {kind, features, hidden[, scaling]},
              "context": <public context hash>, "tensors": [{"name", "length", "bytes"}, ...]}

Version 2 carries the coalition's feature scaling in "model" (`tclearn.he.scaling`); version 1 (no scaling:
rows used as they are) is still read. Every function below takes raw rows and applies the model's scaling.

Computations use TenSEAL's vector-matrix product (`mm`, diagonal method: one rotation per weight of the
vector) with plain matrices built from the member's data, so a member computes on its plain data and the
encrypted weights without ever seeing a weight. Results stay encrypted under the supervisor's key.

Levels needed (4 in a fresh ciphertext, see `context.py`): logreg inference 1 (2 on encrypted features);
mlp inference 3 for the hidden rows and 2 for `w2` (4 and 2 on encrypted features); a logreg training
step 4 — so every step ends at level 0 and the member asks the supervisor for a refresh. An mlp step needs
4 (rows) and 3 (`w2`) and, in between, two refreshes of intermediate vectors (`gradient_step`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from tclearn.canonical import canonical_json
from tclearn.errors import ContextMismatch, HEError, IntegrityError
from tclearn.he.context import HEContext
from tclearn.he.model import SIGMOID_COEFFS, ModelSpec, Weights, augment, check_data
from tclearn.vault.store import BlobStore

MAGIC = b"TCHE1\n"
FORMAT = "tclearn-he-model"


@dataclass
class EncryptedModel:
    spec: ModelSpec
    context: str
    vectors: dict[str, ts.CKKSVector]

    def to_bytes(self) -> bytes:
        blobs = [bytes(self.vectors[name].serialize()) for name in self.spec.shapes()]
        header = {
            "format": FORMAT,
            "version": 1 if self.spec.scaling is None else 2,
            "model": self.spec.to_json(),
            "context": self.context,
            "tensors": [
                {"name": name, "length": length, "bytes": len(blob)}
                for (name, length), blob in zip(self.spec.shapes().items(), blobs, strict=True)
            ],
        }
        return MAGIC + canonical_json(header) + b"\n" + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes, he: HEContext) -> EncryptedModel:
        """Parse a container made under `he`'s context; `ContextMismatch` for another context."""
        if not data.startswith(MAGIC) or b"\n" not in data[len(MAGIC) :]:
            raise IntegrityError("not an encrypted tclearn model (missing TCHE1 header)")
        head, _, body = data[len(MAGIC) :].partition(b"\n")
        try:
            header = json.loads(head)
            if header.get("version") not in (1, 2):
                raise ValueError(f"unknown container version {header.get('version')!r}")
            spec = ModelSpec.from_json(header["model"])
            tensors = header["tensors"]
            context = str(header["context"])
        except (ValueError, KeyError, TypeError, AttributeError, HEError) as exc:
            raise IntegrityError(f"malformed encrypted model header: {exc}") from None
        if context != he.hash:
            raise ContextMismatch(
                f"the model was encrypted under context {context[:16]}..., not {he.hash[:16]}...",
                context=context,
                expected=he.hash,
            )
        if [t["name"] for t in tensors] != list(spec.shapes()) or sum(t["bytes"] for t in tensors) != len(body):
            raise IntegrityError("encrypted model tensors do not match its declared shape or size")
        vectors, offset = {}, 0
        for tensor in tensors:
            vector = he.load_vector(body[offset : offset + tensor["bytes"]])
            if vector.size() != tensor["length"]:
                raise IntegrityError(f"tensor {tensor['name']!r} holds {vector.size()} values, not {tensor['length']}")
            vectors[tensor["name"]] = vector
            offset += tensor["bytes"]
        return cls(spec, context, vectors)

    def levels(self, he: HEContext) -> dict[str, int]:
        return {name: he.level(v) for name, v in self.vectors.items()}


def encrypt_model(he: HEContext, spec: ModelSpec, weights: Weights) -> EncryptedModel:
    """Encrypt plain weights (needs only the public context)."""
    shapes = spec.shapes()
    if set(weights) != set(shapes) or any(len(weights[n]) != size for n, size in shapes.items()):
        raise HEError(f"weights do not match the {spec.kind} shape {shapes}")
    return EncryptedModel(spec, he.hash, {name: he.encrypt(weights[name]) for name in shapes})


def decrypt_model(he: HEContext, model: EncryptedModel) -> Weights:
    """Plain weights (supervisor only: needs the secret key)."""
    return {name: he.decrypt(vector) for name, vector in model.vectors.items()}


def store_container(store: BlobStore, model: EncryptedModel) -> str:
    """Put the container in the vault; returns its sha256 (the model hash)."""
    return store.put(model.to_bytes())


def load_container(store: BlobStore, model_hash: str, he: HEContext) -> EncryptedModel:
    return EncryptedModel.from_bytes(store.get(model_hash), he)


def model_hash(model: EncryptedModel) -> str:
    return hashlib.sha256(model.to_bytes()).hexdigest()


INFERENCE_LEVELS = {"logreg": {"w": 1}, "mlp": {"w2": 2, "w1": 3}}
ENCRYPTED_INFERENCE_LEVELS = {"logreg": {"w": 2}, "mlp": {"w2": 2, "w1": 4}}
TRAINING_LEVELS = {"logreg": {"w": 4}, "mlp": {"w2": 3, "w1": 4}}

Refresh = Callable[[list[ts.CKKSVector]], list[ts.CKKSVector]]
"""Asks the supervisor to re-encrypt vectors at full depth (`duties.blinded_refresh`)."""


def _needed(table: dict[str, dict[str, int]], spec: ModelSpec, name: str) -> int:
    return table[spec.kind][name.split("_")[0]]


def missing_levels(he: HEContext, model: EncryptedModel, table: dict[str, dict[str, int]]) -> bool:
    """True when some vector has fewer levels than the operation described by `table` needs."""
    return any(he.level(v) < _needed(table, model.spec, name) for name, v in model.vectors.items())


def _require(he: HEContext, model: EncryptedModel, table: dict[str, dict[str, int]]) -> None:
    for name, vector in model.vectors.items():
        he.require_level(vector, _needed(table, model.spec, name), f"weight vector {name!r}")


def compact(he: HEContext, model: EncryptedModel, level: int | None = None) -> EncryptedModel:
    """Drop every vector to the levels plain-data inference needs: the smallest container usable as it is.
    `level=0` ("cold" storage) drops everything to level 0 instead: 2.3-3x smaller still, but every use then
    starts with a supervisor refresh of the model (`duties.with_levels` asks for it)."""
    if level is not None and not 0 <= level <= he.params.levels:
        raise HEError(f"a ciphertext level is 0 to {he.params.levels}, got {level}")
    return EncryptedModel(
        model.spec,
        model.context,
        {
            n: he.drop_to(v, _needed(INFERENCE_LEVELS, model.spec, n) if level is None else level)
            for n, v in model.vectors.items()
        },
    )


def _spread(size: int, row: int, values: np.ndarray) -> np.ndarray:
    """A (size, len(values)) matrix, zero but for `row`: `w.mm(it)` = w[row] * values, in every sample slot."""
    matrix = np.zeros((size, len(values)))
    matrix[row] = values
    return matrix


def logits(he: HEContext, model: EncryptedModel, x: np.ndarray, signs: np.ndarray | None = None) -> ts.CKKSVector:
    """Encrypted logits of plain raw samples `x` (one slot per sample), times `signs` per sample if given."""
    spec = model.spec
    xs = spec.prepare(x)
    if len(x) > he.params.slots:
        raise HEError(f"at most {he.params.slots} samples per call, got {len(x)}")
    _require(he, model, INFERENCE_LEVELS)
    s = np.ones(len(x)) if signs is None else np.asarray(signs, dtype=np.float64)
    xa = augment(xs)
    if spec.kind == "logreg":
        return model.vectors["w"].mm((xa * s[:, None]).T)
    return _output(model, [model.vectors[f"w1_{k}"].mm(xa.T) for k in range(spec.hidden)], s)


def _output(model: EncryptedModel, pre: Sequence[ts.CKKSVector], s: np.ndarray) -> ts.CKKSVector:
    """mlp logits (times `s` per sample) from the hidden pre-activations `pre` (one vector per hidden unit):
    w2 . [pre_k^2, 1]. Uses 2 levels of `pre` and 1 of `w2`."""
    w2, size = model.vectors["w2"], model.spec.hidden + 1
    out = w2.mm(_spread(size, size - 1, s))
    for k, h in enumerate(pre):
        out = out + h.square() * w2.mm(_spread(size, k, s))
    return out


def encrypt_features(he: HEContext, x: np.ndarray, spec: ModelSpec | None = None) -> list[ts.CKKSVector]:
    """A member's data under the public context: one ciphertext per feature column (samples in slots), after
    `spec`'s scaling when given (a model with a scaling takes scaled columns)."""
    if x.ndim != 2 or not 0 < len(x) <= he.params.slots:
        raise HEError(f"expected (samples <= {he.params.slots}, features) data, got shape {x.shape}")
    return [he.encrypt(column) for column in (x if spec is None else spec.prepare(x)).T]


def logits_encrypted(he: HEContext, model: EncryptedModel, columns: Sequence[ts.CKKSVector]) -> ts.CKKSVector:
    """Encrypted logits of encrypted features (`encrypt_features(he, x, model.spec)`): nothing in clear but the
    shapes."""
    spec = model.spec
    if len(columns) != spec.features:
        raise HEError(f"the model takes {spec.features} features, got {len(columns)} encrypted columns")
    _require(he, model, ENCRYPTED_INFERENCE_LEVELS)
    n = columns[0].size()
    ones = np.ones(n)

    def linear(w: ts.CKKSVector) -> ts.CKKSVector:
        total = w.mm(_spread(spec.features + 1, spec.features, ones))
        for j, column in enumerate(columns):
            total = total + column * w.mm(_spread(spec.features + 1, j, ones))
        return total

    if spec.kind == "logreg":
        return linear(model.vectors["w"])
    return _output(model, [linear(model.vectors[f"w1_{k}"]) for k in range(spec.hidden)], ones)


def residual(he: HEContext, z: ts.CKKSVector, y: np.ndarray) -> ts.CKKSVector:
    """sigmoid_poly(z) - y, encrypted (2 levels of `z`)."""
    c0, c1, _, c3 = SIGMOID_COEFFS
    # A plain vector operand is not replicated across the slots the way `mm` expects its input to be:
    # the label term is encrypted (public key) so that a later `residual.mm` sees a well-formed vector.
    return (z * c3) * z.square() + z * c1 + he.encrypt(c0 - y.astype(np.float64))


def gradient_step(
    he: HEContext, model: EncryptedModel, x: np.ndarray, y: np.ndarray, lr: float, refresh: Refresh | None = None
) -> EncryptedModel:
    """One full-batch gradient step of size `lr` on encrypted weights, from raw rows `x` (the model's scaling
    applied; `duties.train_model` ties `lr` to the data with `model.step_size` and has the supervisor project
    the result onto the weight bounds; `model.gradients` is the plain twin); the result has 0 levels left.
    Logistic regression fits in one fresh ciphertext's depth. The mlp does not: it runs in three stages with two
    `refresh` calls in between (required for an mlp):

    1. forward: h_k = w1_k . x (rows at 4 -> 3), z = w2 . [h_k^2, 1] (-> 1); refresh z;
    2. residual r = sigmoid_poly(z) - y (4 -> 2); refresh r;
    3. gradients: dw2 = sum_i r_i [h_ik^2, 1] / n (-> 0), dw1_k = sum_i r_i w2_k 2 h_ik x_i / n (-> 0).
    """
    spec = model.spec
    check_data(spec, x, y)
    _require(he, model, TRAINING_LEVELS)
    xa, n = augment(spec.prepare(x)), len(x)
    if spec.kind == "logreg":
        w = model.vectors["w"]
        return EncryptedModel(spec, model.context, {"w": w - residual(he, w.mm(xa.T), y).mm(xa * (lr / n))})
    if refresh is None:
        raise HEError("an mlp training step needs supervisor refreshes between its stages: pass refresh=")
    pre = [model.vectors[f"w1_{k}"].mm(xa.T) for k in range(spec.hidden)]
    (z,) = refresh([_output(model, pre, np.ones(n))])
    (r,) = refresh([residual(he, z, y)])
    w2, size = model.vectors["w2"], spec.hidden + 1
    dw2 = r.mm(_spread(size, size - 1, np.full(n, lr / n)).T)
    for k, h in enumerate(pre):
        dw2 = dw2 + (r * h.square()).mm(_spread(size, k, np.full(n, lr / n)).T)
    new = {"w2": w2 - dw2}
    for k, h in enumerate(pre):
        delta = (r * h) * w2.mm(_spread(size, k, np.ones(n)))
        new[f"w1_{k}"] = model.vectors[f"w1_{k}"] - delta.mm(xa * (2 * lr / n))
    return EncryptedModel(spec, model.context, {name: new[name] for name in spec.shapes()})
