"""Deterministic train/test splits keyed on item names.

Each name is ranked by a hash of `seed:name`, so a split depends only on the names and the seed: the same
folder gives the same split on every machine, and adding a file moves no other file across the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tclearn.errors import ConfigError
from tclearn.learning.data import ImageData


def _rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_indices(names: Sequence[str], test_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, test) indices, each sorted; at least one item on each side when there are two or more."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if len(set(names)) != len(names):
        raise ConfigError("names must be unique to split deterministically")
    order = sorted(range(len(names)), key=lambda i: _rank(names[i], seed))
    n_test = round(len(names) * test_fraction)
    if len(names) >= 2:
        n_test = min(max(n_test, 1), len(names) - 1)
    return sorted(order[n_test:]), sorted(order[:n_test])


def train_test_split(data: ImageData, test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageData, ImageData]:
    train, test = split_indices(data.names, test_fraction, seed)
    return data.subset(train), data.subset(test)
