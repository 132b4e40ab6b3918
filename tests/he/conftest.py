"""Fixtures of the variant C suite: one supervisor key pair per session (key generation takes seconds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tclearn.he.context import HEContext, new_secret_context
from tclearn.he.keys import generate
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.state.db import Database


@dataclass(frozen=True)
class Keys:
    secret: HEContext
    public_bytes: bytes
    public: HEContext


@pytest.fixture(scope="session")
def keys() -> Keys:
    secret, public_bytes = generate()
    return Keys(secret, public_bytes, HEContext.from_public(public_bytes))


@pytest.fixture(scope="session")
def other_secret() -> HEContext:
    """A second supervisor's context, with the same parameters and other keys."""
    return HEContext(new_secret_context(), "f" * 64)


@pytest.fixture
def supervisor(keys: Keys) -> Supervisor:
    return Supervisor(keys.secret, Database("sqlite://"), Limits(requests_per_minute=1000))


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    """64 samples, 4 features, two noisy linearly separable classes."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 4))
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.3 * rng.normal(size=64) > 0).astype(np.float64)
    return x, y
