"""Byzantine attacks on ciphertexts: what a member with only the public context can submit decrypts as planned."""

from __future__ import annotations

import numpy as np
import pytest

from tclearn.he.attacks import SIGN_FLIP_SCALE, attack_model
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.encrypted import compact, decrypt_model, encrypt_model
from tclearn.he.model import ModelSpec, init_weights
from tclearn.he.supervisor import Supervisor
from tclearn.learning.attacks import Attack
from tests.he.conftest import Keys

SPEC = ModelSpec("logreg", 3)


@pytest.mark.parametrize("attack", [Attack.SIGN_FLIP, Attack.LAZY, Attack.GAUSSIAN_NOISE, Attack.NONE])
def test_attacks_on_ciphertexts(keys: Keys, supervisor: Supervisor, attack: Attack) -> None:
    member = keys.public
    client = LocalSupervisorClient(supervisor, "0x00000000000000000000000000000000000000aa")
    parent_w, child_w = init_weights(SPEC, 1), init_weights(SPEC, 2)
    parent = compact(member, encrypt_model(member, SPEC, parent_w))  # as stored in the vault
    child = encrypt_model(member, SPEC, child_w)  # fresh, as training leaves it
    submitted = decrypt_model(keys.secret, attack_model(attack, member, parent, child, client, seed=3))["w"]
    expected = {
        Attack.SIGN_FLIP: parent_w["w"] - SIGN_FLIP_SCALE * (child_w["w"] - parent_w["w"]),
        Attack.LAZY: parent_w["w"],
        Attack.NONE: child_w["w"],
    }
    if attack is Attack.GAUSSIAN_NOISE:
        assert 0.01 < np.abs(submitted - child_w["w"]).max() < 0.5
    else:
        assert np.allclose(submitted, expected[attack], atol=1e-3)
    refreshes = [e for e in supervisor.log() if e.action == "refresh"]
    assert len(refreshes) == (attack in (Attack.SIGN_FLIP, Attack.LAZY))  # the parent, to have the depth


def test_random_weights_are_a_fresh_encryption(keys: Keys, supervisor: Supervisor) -> None:
    client = LocalSupervisorClient(supervisor, "0x00000000000000000000000000000000000000aa")
    child = encrypt_model(keys.public, SPEC, init_weights(SPEC, 2))
    noise = decrypt_model(keys.secret, attack_model(Attack.RANDOM_WEIGHTS, keys.public, child, child, client))["w"]
    assert noise.shape == (SPEC.features + 1,) and np.abs(noise - init_weights(SPEC, 2)["w"]).max() > 0.2
