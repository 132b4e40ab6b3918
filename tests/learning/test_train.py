"""train_increment: facts, determinism, batch-size policy, cancellation, and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tclearn.errors import ConfigError, DataError, TrainingCancelled
from tclearn.learning.data import ImageData, Task, load_segmentation
from tclearn.learning.evaluate import drop_specks, evaluate, precision_recall
from tclearn.learning.models import build_model
from tclearn.learning.train import CancelToken, TrainConfig, train_increment

UNET = {"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}}


@pytest.fixture(scope="module")
def data(small_coalition: Path) -> ImageData:
    return load_segmentation(small_coalition / "hospital-1" / "train")


def test_increment_returns_new_weights_and_facts(data: ImageData) -> None:
    parent = build_model(UNET)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    inc = train_increment(parent, data, TrainConfig(epochs=2, batch_size=4, seed=1))
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # parent untouched
    assert any(not torch.equal(before[k], inc.weights[k]) for k in before)
    facts = inc.facts.to_dict()
    assert (facts["samples"], facts["epochs"], facts["batch_size"], facts["steps"]) == (8, 2, 4, 4)
    assert facts["optimiser"] == "adam" and facts["loss"] == "dice_ce" and facts["device"] == "cpu"


def test_same_seed_same_weights(data: ImageData) -> None:
    torch.manual_seed(0)
    parent = build_model(UNET)
    a = train_increment(parent, data, TrainConfig(epochs=1, batch_size=2, seed=7)).weights
    b = train_increment(parent, data, TrainConfig(epochs=1, batch_size=2, seed=7)).weights
    c = train_increment(parent, data, TrainConfig(epochs=1, batch_size=2, seed=8)).weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_min_batch_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="minimum batch size 4"):
        TrainConfig(batch_size=2, min_batch_size=4)


def test_too_few_samples_for_one_batch(data: ImageData) -> None:
    with pytest.raises(DataError, match="cannot fill one batch"):
        train_increment(build_model(UNET), data, TrainConfig(batch_size=16))


@pytest.mark.parametrize(
    "bad", [{"epochs": 0}, {"lr": 0.0}, {"optimiser": "lbfgs"}, {"loss": "focal"}, {"batch_size": True}]
)
def test_bad_train_config(bad: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_cancellation_stops_training(data: ImageData) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(TrainingCancelled):
        train_increment(build_model(UNET), data, TrainConfig(batch_size=2), cancel=token)


def test_classification_trains_and_evaluates() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    data = ImageData(Task.CLASSIFICATION, x, y, tuple(str(i) for i in range(16)), ("neg", "pos"))
    model = build_model({"arch": "fully_connected", "in_channels": 3})
    inc = train_increment(model, data, TrainConfig(epochs=20, batch_size=8, lr=0.05))
    model.load_state_dict(inc.weights)
    result = evaluate(model, data)
    assert inc.facts.loss == "ce"
    assert set(result.metrics) == {"accuracy", "auc", "precision", "recall"}
    assert result.score == result.metrics["accuracy"] >= 0.8


def test_evaluation_is_deterministic_and_in_range(data: ImageData) -> None:
    model = build_model(UNET)
    first, second = evaluate(model, data, batch_size=3), evaluate(model, data, batch_size=5)
    assert first.metrics == pytest.approx(second.metrics)
    assert 0.0 <= first.metrics["iou"] <= first.metrics["dice"] <= 1.0


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        ([0, 1, 1, 0], [0, 1, 1, 0], (1.0, 1.0)),
        ([1, 1, 1, 1], [0, 0, 1, 1], (0.25, 0.5)),
        ([0, 0], [1, 1], (0.0, 0.0)),
    ],
)
def test_precision_recall(pred: list[int], truth: list[int], expected: tuple[float, float]) -> None:
    assert precision_recall(torch.tensor(pred), torch.tensor(truth), 2) == pytest.approx(expected)


class CancelAfter(CancelToken):
    """Cancels itself after `steps` checks, as another thread would mid-run."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    @property
    def cancelled(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_cancellation_mid_run_reports_steps_done(data: ImageData) -> None:
    with pytest.raises(TrainingCancelled) as info:
        train_increment(build_model(UNET), data, TrainConfig(epochs=3, batch_size=2), cancel=CancelAfter(5))
    assert info.value.details["steps"] == 5


def test_progress_bar_runs(data: ImageData) -> None:
    inc = train_increment(build_model(UNET), data, TrainConfig(batch_size=4, progress=True))
    assert inc.facts.steps == 2


def test_3d_nifti_folder_trains_and_evaluates(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    for kind in ("images", "masks"):
        (tmp_path / kind).mkdir()
    for k in range(4):
        mask = np.zeros((16, 16, 16), np.uint8)
        mask[4 + k : 9 + k, 5:10, 3:8] = 1
        image = (mask * 0.8 + rng.uniform(0, 0.2, mask.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "images" / f"v{k}.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "masks" / f"v{k}.nii.gz")
    data = load_segmentation(tmp_path)
    assert tuple(data.images.shape) == (4, 1, 16, 16, 16)
    model = build_model({**UNET, "spatial_dims": 3})
    model.load_state_dict(train_increment(model, data, TrainConfig(epochs=2, batch_size=2)).weights)
    assert 0.0 <= evaluate(model, data).score <= 1.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"arch": "resnet18"}, "does not fit segmentation"),
        ({**UNET, "in_channels": 3}, "does not fit inputs"),
    ],
)
def test_model_that_does_not_fit_the_data(data: ImageData, config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_increment(build_model(config), data, TrainConfig(batch_size=4))
    with pytest.raises(ConfigError, match=message):
        evaluate(build_model(config), data)


def test_on_step_reports_every_step(data: ImageData) -> None:
    seen: list[tuple[int, int]] = []
    inc = train_increment(
        build_model(UNET), data, TrainConfig(epochs=2, batch_size=4), on_step=lambda *s: seen.append(s)
    )
    assert seen == [(i, inc.facts.steps) for i in range(1, inc.facts.steps + 1)] and inc.facts.steps == 4


def test_specks_below_the_finding_area_are_dropped_before_dice() -> None:
    masks = torch.zeros(2, 1, 16, 16)
    masks[0, 0, 2:6, 2:6] = 1  # a 16-pixel finding
    masks[0, 0, 10, 10] = 1  # a 1-pixel speck
    masks[1, 0, 12:14, 3:5] = 1  # 4 pixels: below the default 5
    kept = drop_specks(masks)
    assert kept[0, 0, 2:6, 2:6].all() and kept[0, 0, 10, 10] == 0 and kept[1].sum() == 0
    assert torch.equal(drop_specks(masks, 1), masks) and drop_specks(masks, 4)[1].sum() == 4

    class Constant(torch.nn.Module):  # predicts `masks` whatever the input
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (masks[: len(x)] * 2 - 1) * 10

    truth = torch.zeros_like(masks)
    truth[0, 0, 2:6, 2:6] = 1
    data = ImageData(Task.SEGMENTATION, torch.rand(2, 1, 16, 16), truth, ("a", "b"))
    assert evaluate(Constant(), data).score == pytest.approx(1.0)  # the speck and the small blob are not findings
    assert evaluate(Constant(), data, min_area=1).score < 0.5  # counted, the empty image scores 0
