"""Byzantine behaviours a simulated member can adopt, for simulations and tests of the validators.

Weight attacks map (parent, honest increment) to the weights the member submits; data attacks
(`flip_labels` here, the others in `tclearn.learning.poison`) change the data before honest training. Each is
a plain function, named for what it does. The stealthy weight attacks:

- **drift** — the parent moved towards its reversed update, parent - `DRIFT_SCALE` x (child - parent), by the
  largest mix whose score
  on the attacker's probe set (G, which every member holds) stays above the parent's score less
  `DRIFT_MARGIN` x the tolerance: each increment costs G a little less than the validators allow, found by
  bisection in `DRIFT_PROBES` evaluations of the probe;
- **model replacement** — trained on the backdoor's data, then the update boosted by the number of
  contributors (`boost`) so that it survives FedAvg averaging;
- **little is enough** — needs every Byzantine contribution of the round: the FedAvg round wires it
  (`tclearn.coalition.fedavg`); a member alone submits its honest increment.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tclearn.errors import ConfigError
from tclearn.learning.choices import Attack
from tclearn.learning.data import Task
from tclearn.learning.samples import Samples, relabelled

StateDict = dict[str, torch.Tensor]
Score = Callable[[StateDict], float]  # a model's score on the attacker's probe set (higher is better)

DRIFT_MARGIN = 0.8  # a drifting candidate costs G at most this share of the tolerance
# How far the drift's worst model reverses the honest update. Measured on the demo (a head at G 0.29): reversing
# by 10 (`sign_flip`) is not monotone: by 0.16 cost G 0.007, by 0.6 0.064, by 1.25 0.16, by 5 0.25, by all 10
# only 0.016 (a model that finds nothing, right on the empty images); N(0, 1) noise of each tensor's norm cost
# 0.03 at most. Reversing by 2 keeps the bisection within the smooth part.
DRIFT_SCALE = 2.0
DRIFT_PROBES = 8  # evaluations of the probe set per drifting increment (the parent's included)
BOOST = 4  # model replacement: the default number of contributors the update must survive averaging with


def _float_items(state: StateDict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if v.dtype.is_floating_point}


def random_weights(state: StateDict, seed: int = 0, std: float = 1.0) -> StateDict:
    """Every floating tensor replaced by N(0, std) noise of the same shape; buffers kept."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for k, v in _float_items(state).items():
        out[k] = (torch.randn(v.shape, generator=gen, dtype=torch.float64) * std).to(v.dtype)
    return out


def sign_flip(parent: StateDict, child: StateDict, scale: float = 10.0) -> StateDict:
    """The honest update reversed and scaled: parent - scale * (child - parent)."""
    out = dict(child)
    for k, v in _float_items(child).items():
        out[k] = parent[k] - scale * (v - parent[k])
    return out


def gaussian_noise(state: StateDict, sigma: float = 0.1, seed: int = 0) -> StateDict:
    """N(0, sigma) noise added to every floating tensor."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for k, v in _float_items(state).items():
        out[k] = v + (torch.randn(v.shape, generator=gen, dtype=torch.float64) * sigma).to(v.dtype)
    return out


def lazy(parent: StateDict) -> StateDict:
    """The parent returned unchanged (a copy), as if trained."""
    return {k: v.clone() for k, v in parent.items()}


def mix(parent: StateDict, other: StateDict, t: float) -> StateDict:
    """parent + t * (other - parent) on every floating tensor; the rest (integer buffers) as in `other`."""
    out = dict(other)
    for k, v in _float_items(parent).items():
        out[k] = v + t * (other[k] - v)
    return out


def largest_mix(score_at: Callable[[float], float], floor: float, evaluations: int = DRIFT_PROBES - 1) -> float:
    """The largest t in [0, 1] found with `score_at(t) >= floor` by bisection in at most `evaluations` calls
    (t = 1 first, then halving; resolution 2^-(evaluations-1)); 0 when none passes (t = 0 is taken to pass).
    Every t returned but 0 was evaluated and passed."""
    if evaluations < 1:
        raise ConfigError(f"the bisection needs at least one evaluation, got {evaluations}")
    if score_at(1.0) >= floor:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(evaluations - 1):
        middle = (low + high) / 2
        if score_at(middle) >= floor:
            low = middle
        else:
            high = middle
    return low


def drift(
    parent: StateDict,
    child: StateDict,
    score: Score,
    tolerance: float,
    margin: float = DRIFT_MARGIN,
    evaluations: int = DRIFT_PROBES,
) -> StateDict:
    """The parent moved towards `sign_flip(parent, child, DRIFT_SCALE)` as far as its `score` stays at least the
    parent's less `margin * tolerance` (`evaluations` calls of `score`, the parent's included)."""
    if not 0 < margin <= 1:
        raise ConfigError(f"the drift margin must be in (0, 1], got {margin}")
    bad = sign_flip(parent, child, DRIFT_SCALE)
    floor = score(parent) - margin * tolerance
    t = largest_mix(lambda t: score(mix(parent, bad, t)), floor, evaluations - 1)
    return mix(parent, bad, t)


def replacement(parent: StateDict, child: StateDict, boost: float = BOOST) -> StateDict:
    """parent + boost * (child - parent): a model that survives averaging with `boost` - 1 others' near the
    parent."""
    return mix(parent, child, boost)


def flip_labels(data: Samples) -> Samples:
    """Masks inverted (foreground <-> background), every label of a multi-label item flipped; class c becomes
    class (n - 1 - c) of the `n` classes the data names."""
    if data.task is not Task.CLASSIFICATION:
        return relabelled(data, lambda y: 1 - y)
    if not data.classes:
        raise ConfigError("cannot flip the labels of a classification set that does not name its classes")
    classes = len(data.classes)
    return relabelled(data, lambda y: classes - 1 - y)


def parse_attack(attack: Attack | str) -> Attack:
    try:
        return Attack(attack)
    except ValueError:
        raise ConfigError(f"unknown attack {attack!r}; expected one of {', '.join(a.value for a in Attack)}") from None


def attack_weights(
    attack: Attack | str,
    parent: StateDict,
    child: StateDict,
    seed: int = 0,
    *,
    probe: Score | None = None,
    tolerance: float | None = None,
    boost: float = BOOST,
) -> StateDict:
    """The weights a member adopting `attack` submits after honest training produced `child` (on poisoned data
    for a data attack). Drift needs `probe` (the score on the attacker's probe set) and the `tolerance` on it."""
    kind = parse_attack(attack)
    match kind:
        case Attack.RANDOM_WEIGHTS:
            return random_weights(child, seed)
        case Attack.SIGN_FLIP:
            return sign_flip(parent, child)
        case Attack.GAUSSIAN_NOISE:
            return gaussian_noise(child, seed=seed)
        case Attack.LAZY:
            return lazy(parent)
        case Attack.DRIFT:
            if probe is None or tolerance is None:
                raise ConfigError("the drift attack needs a probe set and the tolerance it tunes its increment to")
            return drift(parent, child, probe, tolerance)
        case Attack.MODEL_REPLACEMENT:
            return replacement(parent, child, boost)
        case _:  # NONE, the data attacks (which act before training) and LITTLE_IS_ENOUGH (the FedAvg round's)
            return child
