"""The pure parts of a ranking: budgets as given, and thumbnails of images and volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.ranking import check_budget, parse_budget, thumbnail


@pytest.mark.parametrize(
    ("text", "pool", "budget"),
    [("5", 10, 5), ("10%", 80, 8), ("1%", 10, 1), ("100%", 7, 7), ("25%", 6, 2)],
)
def test_parse_budget(text: str, pool: int, budget: int) -> None:
    assert parse_budget(text, pool) == budget


@pytest.mark.parametrize("text", ["ten", "0%", "101%", "%", "-5%"])
def test_a_bad_budget_is_named(text: str) -> None:
    with pytest.raises(ConfigError, match=f"budget {text!r}"):
        parse_budget(text, 10)


@pytest.mark.parametrize("budget", [0, 11, -1])
def test_a_budget_outside_the_folder(budget: int, tmp_path: object) -> None:
    with pytest.raises(ConfigError, match=f"budget {budget} must be between 1 and the 10 images"):
        check_budget(budget, 10, tmp_path)  # type: ignore[arg-type]


def red(picture: np.ndarray) -> int:
    """Pixels tinted red (grey pixels have red = green)."""
    return int((picture[..., 0].astype(int) - picture[..., 1].astype(int) > 30).sum())


def test_a_2d_thumbnail_shows_the_probability_in_red() -> None:
    image = np.full((1, 32, 32), 0.5, dtype=np.float32)
    image[0, 0, 0] = 0.0
    maps = torch.zeros(2, 1, 32, 32)
    maps[:, :, :8, :8] = 1.0
    picture = np.asarray(thumbnail(image, maps))
    assert picture.shape == (256, 256, 3)
    assert red(picture) == 64 * 64  # the 8x8 corner, scaled 8 times
    assert red(np.asarray(thumbnail(image, torch.zeros(2, 1, 32, 32)))) == 0


def test_a_volume_shows_the_slice_of_most_disagreement() -> None:
    image = np.random.default_rng(0).random((1, 16, 16, 8)).astype(np.float32)
    maps = torch.zeros(2, 1, 16, 16, 8)
    maps[0, :, :4, :4, 5] = 1.0  # the models disagree on slice 5 only; the mean probability there is 0.5
    maps[:, :, 8:, 8:, 2] = 1.0  # and agree on a finding in slice 2
    picture = np.asarray(thumbnail(image, maps))
    assert red(picture[: 4 * 16, : 4 * 16]) > 0 and red(picture[8 * 16 :, 8 * 16 :]) == 0
