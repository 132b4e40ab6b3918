"""Byzantine behaviours a simulated member can adopt, for simulations and tests of the validators.

Weight attacks map (parent, honest increment) to the weights the member submits; `flip_labels` poisons the
data before honest training. Each is a plain function, named for what it does.
"""

from __future__ import annotations

import torch

from tclearn.errors import ConfigError
from tclearn.learning.choices import Attack
from tclearn.learning.data import Task
from tclearn.learning.samples import Samples, relabelled

StateDict = dict[str, torch.Tensor]


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


def flip_labels(data: Samples) -> Samples:
    """Masks inverted (foreground <-> background), every label of a multi-label item flipped; class c becomes
    class (n - 1 - c) of the `n` classes the data names."""
    if data.task is not Task.CLASSIFICATION:
        return relabelled(data, lambda y: 1 - y)
    if not data.classes:
        raise ConfigError("cannot flip the labels of a classification set that does not name its classes")
    classes = len(data.classes)
    return relabelled(data, lambda y: classes - 1 - y)


def attack_weights(attack: Attack | str, parent: StateDict, child: StateDict, seed: int = 0) -> StateDict:
    """The weights a member adopting `attack` submits after honest training produced `child`."""
    try:
        kind = Attack(attack)
    except ValueError:
        raise ConfigError(f"unknown attack {attack!r}; expected one of {', '.join(a.value for a in Attack)}") from None
    match kind:
        case Attack.RANDOM_WEIGHTS:
            return random_weights(child, seed)
        case Attack.SIGN_FLIP:
            return sign_flip(parent, child)
        case Attack.GAUSSIAN_NOISE:
            return gaussian_noise(child, seed=seed)
        case Attack.LAZY:
            return lazy(parent)
        case _:  # NONE and LABEL_FLIP (which acts on the data, before training)
            return child
