"""The coalition's watermark written by training: the plain path and DP-SGD, whose mark step reads no data and so
spends no privacy (the increment declares exactly what it would without the mark)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.models import build_model
from tclearn.learning.privacy import DPConfig
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.learning.watermark import measure, new_key

UNET = {"arch": "unet", "options": {"channels": [8, 16], "strides": [2]}}


@pytest.fixture(scope="module")
def data(small_coalition: Path) -> ImageData:
    return load_segmentation(small_coalition / "hospital-1" / "train")


@pytest.mark.parametrize("per_sample", ["vmap", "hooks", None])
def test_an_increment_carries_the_mark_and_dp_declares_the_same_privacy(
    data: ImageData, per_sample: str | None
) -> None:
    torch.manual_seed(0)
    parent = build_model(UNET)
    key = new_key(parent.state_dict(), "coalition", bits=64, secret=bytes(range(32)))
    dp = None if per_sample is None else DPConfig(1.0, 1.0, 1e-3, per_sample=per_sample, secret_seed=11)  # type: ignore[arg-type]
    config = TrainConfig(epochs=3, batch_size=2, min_batch_size=1, seed=3, lr=0.01, dp=dp)

    plain = train_increment(parent, data, config)
    marked = train_increment(parent, data, dataclasses.replace(config, marks=(key,)))

    assert measure(parent.state_dict(), key).errors > 16  # nobody wrote it yet: about half the bits wrong
    assert measure(plain.weights, key).errors > 16
    assert measure(marked.weights, key).errors == 0
    assert marked.privacy == plain.privacy and (dp is None) == (marked.privacy is None)
    assert marked.facts.steps == plain.facts.steps and isinstance(marked.facts.steps, int)
    assert set(marked.weights) == set(parent.state_dict())  # no wrapper prefixes
