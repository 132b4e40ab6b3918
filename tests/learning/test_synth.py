"""The synthetic coalition: layout, configured domain shift, and coalition beats a single hospital."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.evaluate import evaluate
from tclearn.learning.models import build_model
from tclearn.learning.synth import HospitalProfile, synth_coalition
from tclearn.learning.train import TrainConfig, train_increment


def test_layout(small_coalition: Path) -> None:
    for hospital in ("hospital-1", "hospital-2"):
        for split in ("train", "test"):
            for kind in ("images", "masks"):
                assert any((small_coalition / hospital / split / kind).iterdir())
    assert len(list((small_coalition / "global" / "images").iterdir())) == 4
    assert set(json.loads((small_coalition / "coalition.json").read_text())["hospitals"]) == {
        "hospital-1",
        "hospital-2",
    }


def test_same_seed_same_files(tmp_path: Path) -> None:
    synth_coalition(tmp_path / "a", hospitals=1, train=2, test=1, global_size=1, size=16, seed=5)
    synth_coalition(tmp_path / "b", hospitals=1, train=2, test=1, global_size=1, size=16, seed=5)
    for f in (tmp_path / "a").rglob("*.png"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


@pytest.mark.parametrize("bad", [{"hospitals": 0}, {"train": 0}, {"size": 8}, {"hospitals": 2, "size": 20}])
def test_bad_arguments(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        synth_coalition(tmp_path, **bad)


def test_bad_profile() -> None:
    with pytest.raises(ConfigError, match="radius_min"):
        HospitalProfile(radius_min=9, radius_max=3)


def test_hospital_statistics_differ_as_configured(coalition: Path) -> None:
    h1, h2 = (load_segmentation(coalition / h / "train") for h in ("hospital-1", "hospital-2"))
    # hospital-2: smaller intensity scale, larger discs (radius 7-12 vs 2-5)
    fg1 = h1.images[h1.targets.bool()].mean()
    fg2 = h2.images[h2.targets.bool()].mean()
    assert fg2 < fg1
    assert h2.targets.mean() > h1.targets.mean()


def test_raw_domain_shift_defeats_a_single_hospital(coalition: Path) -> None:
    """In raw intensities (no standardisation inside the model) no single hospital's data covers G."""
    hospitals = [load_segmentation(coalition / f"hospital-{i}" / "train") for i in (1, 2, 3)]
    pooled = ImageData(
        hospitals[0].task,
        torch.cat([h.images for h in hospitals]),
        torch.cat([h.targets for h in hospitals]),
        tuple(f"{i}/{n}" for i, h in enumerate(hospitals) for n in h.names),
    )
    test_set = load_segmentation(coalition / "global")
    config = {"arch": "unet", "options": {"channels": [8, 16, 32], "strides": [2, 2]}, "standardize": False}

    def score(data: ImageData, epochs: int) -> float:
        torch.manual_seed(0)
        model = build_model(config)
        model.load_state_dict(train_increment(model, data, TrainConfig(epochs, 8, lr=1e-2)).weights)
        return evaluate(model, test_set).score

    singles = [score(h, 60) for h in hospitals]  # same number of steps as the pooled run
    assert score(pooled, 20) > max(singles) + 0.05


def test_low_contrast_hospital_has_findings_barely_above_background(coalition: Path) -> None:
    def contrast(name: str) -> float:
        data = load_segmentation(coalition / name / "train")
        return float(data.images[data.targets.bool()].mean() - data.images[~data.targets.bool()].mean())

    assert 0 < contrast("hospital-3") < 0.5 * contrast("hospital-1")


def test_more_hospitals_than_base_profiles_get_distinct_seeded_profiles(tmp_path: Path) -> None:
    described = synth_coalition(tmp_path, hospitals=6, train=1, test=1, global_size=6, size=32, seed=2)
    profiles = list(described["hospitals"].values())  # type: ignore[union-attr]
    assert len({json.dumps(p, sort_keys=True) for p in profiles}) == 6
    assert len(list((tmp_path / "global" / "images").iterdir())) == 6
