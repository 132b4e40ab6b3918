"""The model families CKKS can evaluate, in plain numpy: the reference the encrypted code must match.

- `logreg`: logistic regression, weights `w` = (d feature weights, bias);
- `mlp`: one hidden layer of `hidden` units with the square activation (CryptoNets), then one output:
  rows `w1_k` = (d weights, bias) per hidden unit k, and `w2` = (hidden weights, bias).

The sigmoid is replaced by the degree-3 polynomial 0.5 + 0.197 x - 0.004 x^3 (a least-squares fit on
[-5, 5], as in the TenSEAL tutorial), both in plain and in encrypted training, so that both compute the
same function. A logit > 0 predicts class 1. Every weight vector is one CKKS ciphertext once encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tclearn.errors import DataError, HEError

SIGMOID_COEFFS = (0.5, 0.197, 0.0, -0.004)
KINDS = ("logreg", "mlp")

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    features: int
    hidden: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HEError(f"unknown encrypted model kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.features < 1 or (self.kind == "mlp") != (self.hidden > 0):
            raise HEError(f"invalid {self.kind} shape: {self.features} features, {self.hidden} hidden units")

    def shapes(self) -> dict[str, int]:
        """Name -> length of every weight vector, in a fixed order."""
        if self.kind == "logreg":
            return {"w": self.features + 1}
        rows = {f"w1_{k}": self.features + 1 for k in range(self.hidden)}
        return {**rows, "w2": self.hidden + 1}

    @property
    def weight_count(self) -> int:
        return sum(self.shapes().values())

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "features": self.features, "hidden": self.hidden}


def check_data(spec: ModelSpec, x: np.ndarray, y: np.ndarray | None = None) -> None:
    if x.ndim != 2 or x.shape[1] != spec.features or len(x) == 0:
        raise DataError(f"expected a non-empty (samples, {spec.features}) feature matrix, got shape {x.shape}")
    if y is not None and (y.shape != (len(x),) or not np.isin(y, (0, 1)).all()):
        raise DataError(f"labels must be {len(x)} values of 0 or 1 (binary classification)")


def augment(x: np.ndarray) -> np.ndarray:
    """Features with a trailing column of ones (the bias input)."""
    return np.hstack([x, np.ones((len(x), 1))])


def sigmoid_poly(z: np.ndarray) -> np.ndarray:
    c0, c1, _, c3 = SIGMOID_COEFFS
    return c0 + c1 * z + c3 * z**3


def init_weights(spec: ModelSpec, seed: int = 0, scale: float = 0.1) -> Weights:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, scale, size) for name, size in spec.shapes().items()}


def hidden_rows(spec: ModelSpec, weights: Weights) -> np.ndarray:
    return np.stack([weights[f"w1_{k}"] for k in range(spec.hidden)])


def logits(spec: ModelSpec, weights: Weights, x: np.ndarray) -> np.ndarray:
    xa = augment(x)
    if spec.kind == "logreg":
        return xa @ weights["w"]
    a = (xa @ hidden_rows(spec, weights).T) ** 2
    return a @ weights["w2"][:-1] + weights["w2"][-1]


def gradients(spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray) -> Weights:
    """Gradient of the cross-entropy with the polynomial sigmoid (residual = sigmoid_poly(logit) - y)."""
    xa = augment(x)
    n = len(x)
    if spec.kind == "logreg":
        return {"w": xa.T @ (sigmoid_poly(xa @ weights["w"]) - y) / n}
    w1 = hidden_rows(spec, weights)
    z = xa @ w1.T
    a = z**2
    r = sigmoid_poly(a @ weights["w2"][:-1] + weights["w2"][-1]) - y
    grads = {"w2": np.append(a.T @ r, r.sum()) / n}
    delta = (r[:, None] * weights["w2"][None, :-1]) * 2 * z
    for k in range(spec.hidden):
        grads[f"w1_{k}"] = xa.T @ delta[:, k] / n
    return grads


def train(spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> Weights:
    """Full-batch gradient descent, `steps` times: the plain twin of `encrypted.train_increment`."""
    check_data(spec, x, y)
    current = {k: v.copy() for k, v in weights.items()}
    for _ in range(steps):
        grads = gradients(spec, current, x, y)
        current = {k: current[k] - lr * grads[k] for k in current}
    return current


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose logit has the label's side (> 0 for class 1)."""
    return float(np.mean((scores > 0) == (y == 1)))
