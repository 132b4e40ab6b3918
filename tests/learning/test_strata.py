"""Strata of a data set (findings by size, classes, labels) and the per-stratum scores `evaluate` gives."""

from __future__ import annotations

import pytest
import torch

from tclearn.learning.data import ImageData, Task
from tclearn.learning.evaluate import evaluate
from tclearn.learning.strata import (
    StratumScore,
    class_strata,
    finding_stratum,
    label_strata,
    mean_by_stratum,
)

SIDE = 50  # 2,500 pixels: 0.6 % is 15 pixels, 2 % is 50


def mask(*boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """A `(1, SIDE, SIDE)` mask with each `(row, col, height, width)` box set."""
    m = torch.zeros(1, SIDE, SIDE)
    for r, c, h, w in boxes:
        m[0, r : r + h, c : c + w] = 1
    return m


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (mask(), "finding:none"),
        (mask((0, 0, 2, 7)), "finding:small"),  # 14 pixels: 0.56 %
        (mask((0, 0, 3, 5)), "finding:medium"),  # 15 pixels: 0.6 %, no longer small
        (mask((0, 0, 7, 7)), "finding:medium"),  # 49 pixels: 1.96 %
        (mask((0, 0, 5, 10)), "finding:large"),  # 50 pixels: 2 %
        (mask((0, 0, 20, 20), (30, 30, 2, 2)), "finding:small"),  # the smallest finding decides
        (mask((0, 0, 20, 20), (10, 20, 2, 2)), "finding:large"),  # touching: one finding
        (mask((0, 0, 10, 10))[0], "finding:large"),  # without the channel axis
    ],
)
def test_an_image_is_stratified_by_its_smallest_finding(target: torch.Tensor, expected: str) -> None:
    assert finding_stratum(target) == expected


def test_a_volume_is_stratified_by_voxels() -> None:
    volume = torch.zeros(1, 20, 20, 20)  # 8,000 voxels
    volume[0, :2, :2, :2] = 1  # 8 voxels: 0.1 %
    assert finding_stratum(volume) == "finding:small"
    volume[0, :10, :10, :10] = 1  # 1,000 voxels: 12.5 %
    assert finding_stratum(volume) == "finding:large"


@pytest.mark.parametrize(
    ("targets", "classes", "expected"),
    [
        ([0, 1, 1], ("benign", "malignant"), ["class:benign", "class:malignant", "class:malignant"]),
        ([1, 1], ("benign", "malignant"), ["class:malignant", "class:malignant"]),
        ([2, 0], (), ["class:2", "class:0"]),  # a set that names no classes
    ],
)
def test_a_sample_is_stratified_by_its_class(targets: list[int], classes: tuple[str, ...], expected: list[str]) -> None:
    assert class_strata(torch.tensor(targets), classes) == expected


@pytest.mark.parametrize(
    ("strata", "values", "order", "expected"),
    [
        (["a", "b", "a"], [1.0, 0.0, 0.5], ("b", "a"), (StratumScore("b", 1, 0.0), StratumScore("a", 2, 0.75))),
        (["a"], [0.25], ("z", "a"), (StratumScore("a", 1, 0.25),)),  # a stratum without samples is left out
        (["y", "x"], [1.0, 0.0], (), (StratumScore("x", 1, 0.0), StratumScore("y", 1, 1.0))),  # unordered: by name
    ],
)
def test_mean_by_stratum(
    strata: list[str], values: list[float], order: tuple[str, ...], expected: tuple[StratumScore, ...]
) -> None:
    assert mean_by_stratum(strata, values, order) == expected


def test_a_label_without_both_cases_has_no_stratum() -> None:
    truth = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    got = label_strata(truth, ("liver", "lung", "brain"), {"liver": 0.75, "lung": float("nan"), "brain": 0.5})
    assert got == (StratumScore("label:liver", 2, 0.75),)


class Fixed(torch.nn.Module):
    """Outputs `logits` whatever the input (in the order the set is read)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.seen : self.seen + len(x)]
        self.seen += len(x)
        return out


def test_per_image_dice_by_finding_size_aggregates_to_the_headline() -> None:
    truth = torch.stack([mask(), mask(), mask((0, 0, 2, 7)), mask((0, 0, 3, 6)), mask((0, 0, 20, 20))])
    predicted = truth.clone()
    predicted[1, 0, 30:40, 30:40] = 1  # a false finding on an empty image: Dice 0
    predicted[2] = 0  # the small finding missed: Dice 0
    predicted[4, 0, :10] = 0  # half the large finding: Dice 2/3
    data = ImageData(Task.SEGMENTATION, torch.zeros(5, 1, SIDE, SIDE), truth, tuple("abcde"))
    result = evaluate(Fixed((predicted * 2 - 1) * 10), data, batch_size=2)
    by_name = {s.name: (s.samples, s.score) for s in result.strata}
    assert by_name == {
        "finding:none": (2, pytest.approx(0.5)),
        "finding:small": (1, pytest.approx(0.0)),
        "finding:medium": (1, pytest.approx(1.0)),
        "finding:large": (1, pytest.approx(2 / 3)),
    }
    assert [s.name for s in result.strata] == ["finding:none", "finding:small", "finding:medium", "finding:large"]
    weighted = sum(s.samples * s.score for s in result.strata) / len(data)
    assert weighted == pytest.approx(result.score) and result.score == pytest.approx((0.5 * 2 + 1 + 2 / 3) / 5)


def test_accuracy_within_each_class_is_its_recall() -> None:
    truth = torch.tensor([0, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 1, 1, 1])  # one benign case called malignant
    logits = torch.nn.functional.one_hot(predicted, 2).float() * 4 - 2
    data = ImageData(Task.CLASSIFICATION, torch.zeros(5, 3), truth, tuple("abcde"), ("benign", "malignant"))
    result = evaluate(Fixed(logits), data)
    assert result.strata == (
        StratumScore("class:benign", 3, pytest.approx(2 / 3)),
        StratumScore("class:malignant", 2, 1.0),
    )
    assert result.score == pytest.approx(0.8)


def test_each_label_is_scored_by_its_auc_on_the_whole_set() -> None:
    truth = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # "lung" has no positive case
    logits = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])  # liver: one pair ranked wrong
    data = ImageData(Task.MULTILABEL, torch.zeros(4, 3), truth, tuple("abcd"), ("liver", "lung"))
    result = evaluate(Fixed(logits), data)
    assert result.strata == (StratumScore("label:liver", 2, pytest.approx(0.75)),)


def test_a_broken_model_scores_zero_on_every_stratum() -> None:
    truth = torch.tensor([0, 1, 1])
    logits = torch.tensor([[float("nan"), 0.0], [0.0, 1.0], [0.0, 1.0]])
    data = ImageData(Task.CLASSIFICATION, torch.zeros(3, 3), truth, tuple("abc"), ("benign", "malignant"))
    result = evaluate(Fixed(logits), data)
    assert result.score == 0.0
    assert result.strata == (StratumScore("class:benign", 1, 0.0), StratumScore("class:malignant", 2, 0.0))
