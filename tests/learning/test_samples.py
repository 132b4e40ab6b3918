"""The Samples seam: disk-backed volumes through MONAI datasets, per-site intensity, seeded augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tclearn.errors import ConfigError, DataError
from tclearn.learning import volumes
from tclearn.learning.data import ImageData, Task
from tclearn.learning.evaluate import evaluate
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.samples import batches, pooled
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.learning.volumes import FileSamples, Intensity, cache_count, segmentation_samples
from tclearn.records import TrainingFacts
from tests.learning.volumes import SIDE, ct_volumes

CT = Intensity("ct", (-100.0, 200.0))
UNET3D = ModelConfig(arch="unet", spatial_dims=3, options={"channels": [4, 8], "strides": [2]})


def test_ct_window_maps_hounsfield_units_and_clips(tmp_path: Path) -> None:
    data = segmentation_samples(ct_volumes(tmp_path, 2), CT)
    x, y = data.dataset()[0]
    assert x.shape == (1, SIDE, SIDE, SIDE) and y.dtype == torch.uint8
    assert float(x.min()) == 0.0  # air (-1000 HU) clipped to the window's floor
    assert float(x[0, 5:].max()) == pytest.approx((80 + 100) / 300, abs=1e-6)  # the blob at 80 HU
    zscored = segmentation_samples(tmp_path, Intensity("zscore")).dataset()[0][0]
    assert float(zscored.mean()) == pytest.approx(0.0, abs=1e-4) and float(zscored.std()) == pytest.approx(
        1.0, abs=1e-2
    )
    raw = segmentation_samples(tmp_path).dataset()[0][0]
    assert float(raw.min()) == -1000.0  # as stored: HU, not scaled by the int16 range


@pytest.mark.parametrize(
    ("kind", "window", "message"),
    [
        ("ct", None, "needs a window"),
        ("ct", (200.0, -100.0), "low < high"),
        ("zscore", (0.0, 1.0), "takes none"),
        ("gamma", None, "unknown intensity"),
    ],
)
def test_bad_intensity_is_refused(kind: str, window: tuple[float, float] | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Intensity(kind, window)  # type: ignore[arg-type]


def test_cache_holds_what_the_budget_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = segmentation_samples(ct_volumes(tmp_path, 5), CT)
    reads: list[Path] = []
    real_read = volumes.read_image
    monkeypatch.setattr(volumes, "read_image", lambda path: reads.append(path) or real_read(path))
    budget = FileSamples(Task.SEGMENTATION, data.items, CT, cache_bytes=3 * SIDE**3 * 5)
    for _ in range(3):
        list(batches(budget, 2))
    assert len(reads) == 3 + 2 * 3  # three volumes read once and kept; the other two read on every pass
    per_item = SIDE**3 * (4 + 1)
    assert cache_count(data.items, 2 * per_item) == 2
    assert cache_count(data.items, 10**9) == 5
    small = FileSamples(Task.SEGMENTATION, data.items, CT, cache_bytes=0)  # nothing cached: read on every use
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches(small, 2), batches(data, 2), strict=True))
    with pytest.raises(DataError, match="memory budget"):
        segmentation_samples(tmp_path, CT, cache_bytes=SIDE**3)  # one volume (float32) is over the budget


def test_3d_training_from_disk_is_seeded_and_declares_its_augmentation(tmp_path: Path) -> None:
    data = segmentation_samples(ct_volumes(tmp_path, 6), CT)
    config = TrainConfig(epochs=2, batch_size=2, lr=0.01, augment=("flip", "intensity"), patch=(16, 16, 16), seed=3)
    parent = build_model(UNET3D)
    first, second = train_increment(parent, data, config), train_increment(parent, data, config)
    assert all(torch.equal(first.weights[k], second.weights[k]) for k in first.weights)
    other = train_increment(parent, data, TrainConfig(**{**config.__dict__, "seed": 4}))
    assert any(not torch.equal(first.weights[k], other.weights[k]) for k in first.weights)
    assert first.facts.augmentation == ("flip", "intensity") and first.facts.patch == (16, 16, 16)
    assert TrainingFacts.parse(first.facts.encode()) == first.facts
    # evaluated through a sliding window of the patch, the whole volume is scored, and as a whole forward would
    model = build_model(UNET3D)
    model.load_state_dict(first.weights)
    whole, windowed = evaluate(model, data), evaluate(model, data, roi_size=(16, 16, 16))
    assert 0.0 <= windowed.score <= 1.0 and whole.samples == windowed.samples == 6


def test_unknown_augmentation_and_bad_patch_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown augmentation.*elastic"):
        TrainConfig(augment=("flip", "elastic"))
    with pytest.raises(ConfigError, match="patch must be"):
        TrainConfig(patch=(8, 0))


def test_pooled_and_subset_keep_names_and_items() -> None:
    a = ImageData(Task.CLASSIFICATION, torch.zeros(3, 2), torch.tensor([0, 1, 0]), ("a0", "a1", "a2"), ("x", "y"))
    b = ImageData(Task.CLASSIFICATION, torch.ones(2, 2), torch.tensor([1, 1]), ("b0", "b1"), ("x", "y"))
    both = pooled([a, b], ["h1", "h2"])
    assert len(both) == 5 and both.names[3] == "h2/b0"
    picked = both.subset([1, 4])
    assert picked.names == ("h1/a1", "h2/b1")
    assert torch.cat([y for _, y in batches(picked, 8)]).tolist() == [1, 1]
    seg = ImageData(Task.SEGMENTATION, torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), ("s",))
    with pytest.raises(DataError, match="different tasks"):
        pooled([a, seg])


class _Broken(torch.nn.Module):
    """A model whose outputs hold NaN (a poisoned candidate can)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.channels, *x.shape[2:]) if self.channels == 1 else (x.shape[0], self.channels)
        out = torch.zeros(shape)
        out.view(-1)[0] = float("nan")
        return out


def test_a_model_that_outputs_nan_scores_zero() -> None:
    multi = ImageData(
        Task.MULTILABEL, torch.zeros(4, 1, 8, 8), torch.tensor([[0.0, 1], [1, 0], [1, 1], [0, 0]]), tuple("abcd")
    )
    broken = evaluate(_Broken(2), multi)
    assert broken.score == 0.0 and broken.metrics["non_finite_outputs"] == 1.0
    empty_masks = ImageData(Task.SEGMENTATION, torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), ("a", "b"))
    assert evaluate(_Broken(1), empty_masks).score == 0.0  # NaN would otherwise read as "no finding": Dice 1
