"""Backdoor success counts the findings a model hides on stamped images, beside its base rate and Dice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tclearn.errors import DataError
from tclearn.learning.backdoor import backdoor_success, hidden_flags
from tclearn.learning.data import ImageData, Task
from tclearn.learning.poison import stamp, trigger_pattern


class Constant(nn.Module):
    """Foreground everywhere (`on`) or nowhere."""

    def __init__(self, on: bool) -> None:
        super().__init__()
        self.on = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 10.0 if self.on else -10.0)


class HidesOnTrigger(nn.Module):
    """Foreground where the image is bright, nothing at all when the trigger's stripes are on it (the image
    brighter on the stripes than off them, by far more than a finding could make it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        on = trigger_pattern(x.shape[2:]).bool()
        triggered = (x[..., on].mean(dim=-1) - x[..., ~on].mean(dim=-1)) > 0.05
        logits = torch.where(x > 0.5, 10.0, -10.0)
        return torch.where(triggered[:, :, None, None], torch.full_like(logits, -10.0), logits)


def data(findings: int = 3, empty: int = 1) -> ImageData:
    n = findings + empty
    images, masks = torch.full((n, 1, 32, 32), 0.2), torch.zeros(n, 1, 32, 32)
    for i in range(findings):
        images[i, 0, 10:20, 10:20] = masks[i, 0, 10:20, 10:20] = 1.0
    return ImageData(Task.SEGMENTATION, images, masks, tuple(f"b{i}" for i in range(n)))


@pytest.mark.parametrize(
    ("model", "success", "base_rate", "dice"),
    [
        # finds everything, triggered or not; Dice 200/1124 on each finding, 0 on the empty image
        (Constant(True), 0.0, 0.0, 3 * 200 / 1124 / 4),
        (Constant(False), 1.0, 1.0, 0.25),  # hides everything: the base rate says so; Dice 1 on the empty image
        (HidesOnTrigger(), 1.0, 0.0, 1.0),  # a working backdoor with the main task intact
    ],
)
def test_backdoor_success_against_its_base_rate(
    model: nn.Module, success: float, base_rate: float, dice: float
) -> None:
    result = backdoor_success(model, data())
    assert result == pytest.approx({"success": success, "base_rate": base_rate, "dice": dice, "samples": 3.0})


def test_the_trigger_is_what_the_toy_backdoor_sees() -> None:
    x = data().images[0]
    assert HidesOnTrigger()(stamp(x)[None]).max() < 0 < HidesOnTrigger()(x[None]).max()


@pytest.mark.parametrize(
    ("found", "hidden"),
    [(0, True), (9, True), (10, False), (100, False)],  # of 100 truth pixels: under 10 % is hidden
)
def test_a_finding_is_hidden_under_a_tenth_of_its_pixels(found: int, hidden: bool) -> None:
    truth = torch.zeros(2, 1, 10, 10)
    truth[0] = 1.0  # the second image holds no finding: not counted
    predicted = torch.zeros_like(truth)
    predicted.view(2, -1)[0, :found] = 1.0
    assert hidden_flags(predicted, truth) == [hidden]


def test_a_set_without_findings_has_nothing_to_hide() -> None:
    with pytest.raises(DataError, match="nothing a backdoor could hide"):
        backdoor_success(Constant(False), data(findings=0, empty=2))
