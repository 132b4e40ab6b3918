"""The pure parts of a ranking: budgets as given, and thumbnails of images and volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tclearn.errors import ConfigError
from tclearn.learning.active import descriptor, select, vote_entropy
from tclearn.learning.choices import DEFAULT_DENSITY
from tclearn.learning.data import Task, read_image
from tclearn.learning.inference import infer
from tclearn.learning.models import build_model
from tclearn.learning.ranking import CommitteeModel, check_budget, parse_budget, rank, thumbnail


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
def test_a_budget_outside_the_folder(budget: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"budget {budget} must be between 1 and the 10 images"):
        check_budget(budget, 10, tmp_path)


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


def _folder(tmp_path: Path, count: int = 4) -> Path:
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"u{k}.png")
    return folder


def _models(config: dict[str, object]) -> list[CommitteeModel]:
    seated = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        seated.append(CommitteeModel(seed, f"0x{seed:040x}", f"{seed:064x}", build_model(config)))
    return seated


@pytest.mark.parametrize(
    ("config", "task"),
    [
        ({"arch": "unet", "out_channels": 2}, Task.SEGMENTATION),  # softmax channels: 1 - background is foreground
        ({"arch": "densenet121", "out_channels": 3}, Task.CLASSIFICATION),
    ],
)
def test_rank_a_folder(tmp_path: Path, config: dict[str, object], task: Task) -> None:
    folder = _folder(tmp_path)
    models = _models(config)
    ranking = rank(models, folder, 2, tmp_path / "out", task=task, device="cpu")
    first = ranking["ranked"][0]
    x = torch.from_numpy(read_image(folder / first["name"]))[None]
    maps = [torch.softmax(infer(m.network, x, device="cpu", task=task), dim=1) for m in models]
    if task is Task.SEGMENTATION:
        maps = [1 - p[:, :1] for p in maps]  # the foreground, not each channel
    assert ranking["measure"] == "entropy" and ranking["density"] == DEFAULT_DENSITY  # the defaults
    assert first["score"] == pytest.approx(vote_entropy(torch.cat(maps)))
    assert json.loads((tmp_path / "out" / "ranking.json").read_text()) == ranking
    assert [m["model_id"] for m in ranking["committee"]] == [1, 2]
    assert all(0.0 <= r["score"] <= 1.0 for r in ranking["ranked"])
    assert sorted(p.name for p in (tmp_path / "out" / "thumbnails").iterdir()) == sorted(
        r["thumbnail"].removeprefix("thumbnails/") for r in ranking["ranked"]
    )


@pytest.mark.parametrize("density", [0.0, 1.0, 4.0])
def test_the_order_is_select_with_the_density_asked(tmp_path: Path, density: float) -> None:
    folder = _folder(tmp_path, 6)
    ranking = rank(_models({"arch": "unet"}), folder, 2, tmp_path / "out", density=density, device="cpu")
    by_name = {r["name"]: r["score"] for r in ranking["ranked"]}
    names = sorted(by_name)
    descriptors = np.stack([descriptor(torch.from_numpy(read_image(folder / n))) for n in names])
    expected = select([by_name[n] for n in names], descriptors, ranking["diversity"], density)
    assert ranking["density"] == density
    assert [r["name"] for r in ranking["ranked"]] == [names[k] for k in expected]
