"""Byzantine behaviours on encrypted models (variant C), named as in `tclearn.learning.attacks`.

A Byzantine member holds only the public context, yet it can still poison what it submits: CKKS lets it
scale and combine ciphertexts and encrypt values of its choice. Label flipping happens on its data, before
honest training (`flip_labels`); the other attacks map (parent, honest increment) to what it submits.
"""

from __future__ import annotations

import numpy as np

from tclearn.errors import ConfigError
from tclearn.he.client import SupervisorClient
from tclearn.he.context import HEContext
from tclearn.he.duties import refresh
from tclearn.he.encrypted import EncryptedModel, encrypt_model
from tclearn.learning.attacks import Attack

SIGN_FLIP_SCALE = 10.0


def flip_labels(y: np.ndarray) -> np.ndarray:
    """0/1 labels swapped."""
    return 1.0 - y


def attack_model(
    attack: Attack,
    he: HEContext,
    parent: EncryptedModel,
    child: EncryptedModel,
    client: SupervisorClient,
    seed: int = 0,
) -> EncryptedModel:
    """What a member adopting `attack` submits after honest training produced `child` (fresh, full depth).

    - sign_flip: parent - 10 (child - parent), computed on the ciphertexts (the parent refreshed first, so
      that both sides have the depth for a scalar product);
    - random_weights: a fresh encryption of N(0, 1) values; gaussian_noise: child + an encryption of
      N(0, 0.1) noise; lazy: the parent re-encrypted (a new ciphertext, the same weights).
    """
    rng = np.random.default_rng(seed)
    shapes = child.spec.shapes()
    match attack:
        case Attack.NONE | Attack.LABEL_FLIP:
            return child
        case Attack.SIGN_FLIP:
            fresh = refresh(he, parent, client).vectors
            vectors = {
                n: fresh[n] * (1.0 + SIGN_FLIP_SCALE) - child.vectors[n] * SIGN_FLIP_SCALE for n in child.vectors
            }
            return EncryptedModel(child.spec, child.context, vectors)
        case Attack.RANDOM_WEIGHTS:
            return encrypt_model(he, child.spec, {n: rng.normal(0.0, 1.0, size) for n, size in shapes.items()})
        case Attack.GAUSSIAN_NOISE:
            noise = {n: he.encrypt(rng.normal(0.0, 0.1, size)) for n, size in shapes.items()}
            return EncryptedModel(child.spec, child.context, {n: child.vectors[n] + noise[n] for n in shapes})
        case Attack.LAZY:
            return refresh(he, parent, client)
    raise ConfigError(f"unknown attack {attack!r}")
