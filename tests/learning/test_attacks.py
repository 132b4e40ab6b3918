"""Byzantine behaviours do what their names say."""

from __future__ import annotations

import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.attacks import Attack, attack_weights, flip_labels, gaussian_noise, lazy, sign_flip
from tclearn.learning.data import ImageData, Task
from tclearn.learning.samples import Samples

PARENT = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(2)}
CHILD = {"w": torch.tensor([1.5, 0.5]), "n": torch.tensor(3)}


def test_sign_flip_reverses_and_scales_the_update() -> None:
    assert torch.allclose(sign_flip(PARENT, CHILD)["w"], torch.tensor([-4.0, 6.0]))


def test_lazy_returns_the_parent() -> None:
    out = lazy(PARENT)
    assert torch.equal(out["w"], PARENT["w"]) and out["w"] is not PARENT["w"]


def test_noise_is_seeded_and_keeps_int_buffers() -> None:
    a, b = gaussian_noise(CHILD, 0.1, seed=1), gaussian_noise(CHILD, 0.1, seed=1)
    assert torch.equal(a["w"], b["w"]) and not torch.equal(a["w"], CHILD["w"])
    assert torch.equal(a["n"], CHILD["n"])


@pytest.mark.parametrize("attack", list(Attack))
def test_every_attack_keeps_the_layout(attack: Attack) -> None:
    out = attack_weights(attack, PARENT, CHILD)
    assert out.keys() == CHILD.keys() and all(out[k].shape == CHILD[k].shape for k in out)


def test_unknown_attack() -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        attack_weights("bribe", PARENT, CHILD)


def _targets(data: Samples) -> torch.Tensor:
    return torch.stack([data.dataset()[i][1] for i in range(len(data))])


def test_label_flip() -> None:
    seg = ImageData(Task.SEGMENTATION, torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]]), ("a",))
    assert _targets(flip_labels(seg)).sum().item() == 1.0
    cls = ImageData(Task.CLASSIFICATION, torch.zeros(3, 2), torch.tensor([0, 1, 2]), ("a", "b", "c"), ("x", "y", "z"))
    assert _targets(flip_labels(cls)).tolist() == [2, 1, 0]
    assert _targets(flip_labels(cls).subset([0])).tolist() == [2]
    multi = ImageData(Task.MULTILABEL, torch.zeros(2, 1, 4, 4), torch.tensor([[0.0, 1.0], [1.0, 1.0]]), ("a", "b"))
    assert _targets(flip_labels(multi)).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    unnamed = ImageData(Task.CLASSIFICATION, torch.zeros(2, 2), torch.tensor([0, 1]), ("a", "b"))
    with pytest.raises(ConfigError, match="does not name its classes"):
        flip_labels(unnamed)
