"""The update size (`tclearn.learning.update.update_norm`), by table."""

from __future__ import annotations

import math

import pytest
import torch

from tclearn.errors import IntegrityError
from tclearn.learning.update import update_norm

PARENT = {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0]), "steps": torch.tensor(7)}


def moved(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**PARENT, **changes}


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        (moved(), 0.0),  # equal
        (moved(w=torch.tensor([3.0, 4.5])), 0.1),  # |(0, 0.5)| / |(3, 4, 0)| = 0.5 / 5
        (moved(b=torch.tensor([5.0])), 1.0),  # every floating tensor counts, as one vector
        (moved(w=torch.tensor([-3.0, -4.0])), 2.0),  # a sign flip
        (moved(steps=torch.tensor(1000)), 0.0),  # integer buffers are ignored
        (moved(w=torch.tensor([3.0, math.nan])), math.inf),  # non-finite: beyond every bound
        (moved(w=torch.tensor([3.0, math.inf])), math.inf),
    ],
)
def test_update_norm(child: dict[str, torch.Tensor], expected: float) -> None:
    assert update_norm(PARENT, child) == pytest.approx(expected)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_update_norm_does_not_depend_on_the_model_scale(scale: float) -> None:
    parent = {"w": torch.tensor([1.0, -2.0, 2.0]) * scale}
    child = {"w": torch.tensor([1.3, -2.0, 2.0]) * scale}
    assert update_norm(parent, child) == pytest.approx(0.1)


def test_update_norm_is_measured_in_float64() -> None:
    parent = {"w": torch.full((1000,), 1e4, dtype=torch.float16)}
    child = {"w": parent["w"] + 8}  # float16 cannot hold the squares: float64 can
    assert update_norm(parent, child) == pytest.approx(8 / 1e4, rel=1e-3)


def test_a_zero_parent() -> None:
    zero = {"w": torch.zeros(3)}
    assert update_norm(zero, zero) == 0.0 and update_norm(zero, {"w": torch.ones(3)}) == math.inf


@pytest.mark.parametrize(
    ("child", "names"),
    [
        ({"w": PARENT["w"], "b": PARENT["b"]}, "steps"),  # a key missing
        (moved(extra=torch.zeros(1)), "extra"),  # a key too many
        (moved(w=torch.zeros(3)), "'w' has shape (3,)"),
        (moved(steps=torch.tensor(7.0)), "'steps' is torch.float32"),
    ],
)
def test_update_norm_refuses_another_model_naming_the_key(child: dict[str, torch.Tensor], names: str) -> None:
    with pytest.raises(IntegrityError, match=names.replace("(", r"\(").replace(")", r"\)")):
        update_norm(PARENT, child)
