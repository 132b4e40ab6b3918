"""The model families CKKS can evaluate, in plain numpy: the reference the encrypted code must match.

- `logreg`: logistic regression, weights `w` = (d feature weights, bias);
- `mlp`: one hidden layer of `hidden` units with the square activation (CryptoNets), then one output:
  rows `w1_k` = (d weights, bias) per hidden unit k, and `w2` = (hidden weights, bias).

The sigmoid is replaced by the degree-3 polynomial 0.5 + 0.197 x - 0.004 x^3 (a least-squares fit on
[-5, 5], as in the TenSEAL tutorial), both in plain and in encrypted training, so that both compute the
same function. A logit > 0 predicts class 1. Every weight vector is one CKKS ciphertext once encrypted.

Keeping logits where the polynomial holds (it rises only on [-4.05, 4.05]; beyond about 7 its gradient
pushes the wrong way and training diverges until the ciphertexts overflow):

- the features are the coalition's scaling of the raw rows (`ModelSpec.scaling`, `tclearn.he.scaling`):
  unit scale, decorrelated, every value within +-4;
- the step size is tied to the member's own scaled data (`step_size`): `lr` times the largest stable step
  for the polynomial's slope and the largest eigenvalue of the data's second-moment matrix, so correlated
  columns do not make a step overshoot;
- every weight vector stays within `weight_bounds` (the norm of its feature weights and its bias): the
  supervisor projects the weights onto them whenever it refreshes a model (`project`), and the general asks
  it to measure a candidate against them. With whitened features a logit's standard deviation is at most
  the norm of the feature weights (2 for a logistic regression), so logits stay within about +-7, where the
  polynomial still puts every row on the right side (it crosses 0.5 again at +-7.02; on the benchmark tables
  the largest |logit| on G is 5.5-6.6), and within 4 sqrt(d) * 2 + 4 for any row whatever: no overflow is
  possible (the range assumption, recorded in the model's metadata). A bound of 1 kept the logits within +-4
  but the models barely beat "everyone negative" at 1:9; 3 let them diverge (bench/he.py, docs/he.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tclearn.errors import DataError, HEError
from tclearn.he.scaling import Scaling

SIGMOID_COEFFS = (0.5, 0.197, 0.0, -0.004)
SLOPE = SIGMOID_COEFFS[1]
"""The polynomial's largest slope (at 0): the curvature of the loss is at most SLOPE times the data's."""
LOGIT_RANGE = 4.0
"""The bias bound: logits where the polynomial sigmoid is increasing ([-4.05, 4.05])."""
NORM = 2.0
"""The bound of a logistic regression's feature weights: the logit's standard deviation on whitened features."""
KINDS = ("logreg", "mlp")

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class Bound:
    """A weight vector's bound: the L2 norm of its feature (or hidden-unit) weights and |bias| (its last entry)."""

    norm: float
    bias: float

    def to_json(self) -> list[float]:
        return [self.norm, self.bias]


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    features: int
    hidden: int = 0
    scaling: Scaling | None = None  # None: the rows are used as they are (containers of the first format)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HEError(f"unknown encrypted model kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.features < 1 or (self.kind == "mlp") != (self.hidden > 0):
            raise HEError(f"invalid {self.kind} shape: {self.features} features, {self.hidden} hidden units")
        if self.scaling is not None and self.scaling.features != self.features:
            raise HEError(f"a {self.features}-feature model cannot take a scaling of {self.scaling.features} columns")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw rows as the model sees them: the coalition's scaling applied (checked for shape)."""
        check_data(self, x)
        return x if self.scaling is None else self.scaling.apply(x)

    @property
    def shape(self) -> dict[str, Any]:
        """The architecture alone (what error messages and descriptions show)."""
        return {"kind": self.kind, "features": self.features, "hidden": self.hidden}

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
        scaling = {} if self.scaling is None else {"scaling": self.scaling.to_json()}
        return {**self.shape, **scaling}

    @classmethod
    def from_json(cls, data: Any) -> ModelSpec:
        try:
            scaling = data.get("scaling")
            return cls(
                str(data["kind"]),
                int(data["features"]),
                int(data.get("hidden", 0)),
                None if scaling is None else Scaling.from_json(scaling),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise HEError(f"malformed encrypted model description: {exc!r}") from None


def weight_bounds(spec: ModelSpec) -> dict[str, Bound]:
    """The bound of every weight vector (see the module's docstring): a logreg's logit has a standard deviation
    of at most NORM on whitened features, an mlp's hidden units and its output at most 1."""
    if spec.kind == "logreg":
        return {"w": Bound(NORM, LOGIT_RANGE)}
    rows = {f"w1_{k}": Bound(1.0, 1.0) for k in range(spec.hidden)}
    return {**rows, "w2": Bound(round(1.0 / np.sqrt(spec.hidden), 6), LOGIT_RANGE)}


def project(values: np.ndarray, bound: Bound) -> np.ndarray:
    """`values` moved onto `bound`: feature weights scaled down to its norm, the bias clipped (pure)."""
    norm = float(np.linalg.norm(values[:-1]))
    weights = values[:-1] * (bound.norm / norm if norm > bound.norm else 1.0)
    return np.append(weights, np.clip(values[-1], -bound.bias, bound.bias))


def project_weights(spec: ModelSpec, weights: Weights) -> Weights:
    bounds = weight_bounds(spec)
    return {name: project(np.asarray(values, dtype=np.float64), bounds[name]) for name, values in weights.items()}


def measure(values: np.ndarray) -> tuple[float, float]:
    """(norm of the feature weights, |bias|) of one weight vector: what the general compares with its bound."""
    return float(np.linalg.norm(values[:-1])), float(abs(values[-1]))


def step_size(lr: float, xs: np.ndarray) -> float:
    """`lr` times the largest stable gradient step on the scaled rows `xs`: 1 / (SLOPE * the largest eigenvalue
    of [xs, 1]^T [xs, 1] / n). A member computes it on its own plain rows."""
    xa = augment(xs)
    largest = float(np.linalg.eigvalsh(xa.T @ xa / len(xa))[-1])
    return lr / (SLOPE * max(largest, 1.0))


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
    """Random weights within `weight_bounds`."""
    rng = np.random.default_rng(seed)
    return project_weights(spec, {name: rng.normal(0.0, scale, size) for name, size in spec.shapes().items()})


def hidden_rows(spec: ModelSpec, weights: Weights) -> np.ndarray:
    return np.stack([weights[f"w1_{k}"] for k in range(spec.hidden)])


def logits(spec: ModelSpec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """Logits of raw rows `x` (the spec's scaling applied)."""
    xa = augment(spec.prepare(x))
    if spec.kind == "logreg":
        return xa @ weights["w"]
    a = (xa @ hidden_rows(spec, weights).T) ** 2
    return a @ weights["w2"][:-1] + weights["w2"][-1]


def gradients(spec: ModelSpec, weights: Weights, xs: np.ndarray, y: np.ndarray) -> Weights:
    """Gradient of the cross-entropy with the polynomial sigmoid (residual = sigmoid_poly(logit) - y) on scaled
    rows `xs` (`spec.prepare`)."""
    xa = augment(xs)
    n = len(xs)
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
    """Full-batch gradient descent on raw rows `x`, `steps` times, each step of `step_size(lr, ...)` and
    projected onto the weight bounds (as the supervisor's refresh does): the plain twin of
    `duties.train_model`."""
    check_data(spec, x, y)
    xs = spec.prepare(x)
    rate = step_size(lr, xs)
    current = {k: v.copy() for k, v in weights.items()}
    for _ in range(steps):
        grads = gradients(spec, current, xs, y)
        current = project_weights(spec, {k: current[k] - rate * grads[k] for k in current})
    return current


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose logit has the label's side (> 0 for class 1)."""
    return float(np.mean((scores > 0) == (y == 1)))
