"""The `j2k:R` augmentation: checked names, seeded draws, the name in the training facts, `tclearn train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tclearn.cli.train import app as train_app
from tclearn.errors import ConfigError
from tclearn.learning.augment import check_augment, j2k_ratio, training_transform
from tclearn.learning.data import ImageData, Task
from tclearn.learning.models import build_model
from tclearn.learning.samples import augmented
from tclearn.learning.train import TrainConfig, train_increment
from tests.learning.test_coding import ct_slice

runner = CliRunner()


@pytest.mark.parametrize(("name", "ratio"), [("j2k:64", 64.0), ("j2k:1", 1.0), ("j2k:2.5", 2.5), ("flip", None)])
def test_j2k_names_parse(name: str, ratio: float | None) -> None:
    assert j2k_ratio(name) == ratio
    assert check_augment([name]) == (name,)


@pytest.mark.parametrize("name", ["j2k:0.5", "j2k:", "j2k:abc", "j2k:nan", "j2k:-4"])
def test_bad_j2k_ratio_is_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"augmentation '{name}'.*>= 1"):
        check_augment([name])


def ct_set(count: int = 8, side: int = 64) -> ImageData:
    images = torch.from_numpy(np.stack([ct_slice(side, s)[np.newaxis] for s in range(count)]).astype(np.float32))
    masks = (images > 100).float()
    return ImageData(Task.SEGMENTATION, images, masks, tuple(f"c{s}" for s in range(count)))


def read_all(seed: int, data: ImageData) -> list[torch.Tensor]:
    transform = training_transform(["j2k:64"], 2, True, seed)
    assert transform is not None
    source = augmented(data, transform)
    return [source.dataset()[i][0] for i in range(len(data))]


def test_j2k_augmentation_is_seeded_codes_about_half_and_leaves_masks() -> None:
    data = ct_set()
    first, again, other = read_all(3, data), read_all(3, data), read_all(4, data)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)
    changed = [not torch.equal(x, data.images[i]) for i, x in enumerate(first)]
    assert 0 < sum(changed) < len(changed)
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    transform = training_transform(["j2k:64"], 2, True, 3)
    assert transform is not None
    item = transform({"image": data.images[0], "label": data.targets[0]})
    torch.testing.assert_close(torch.as_tensor(item["label"]), data.targets[0])


def test_j2k_name_lands_in_training_facts() -> None:
    config = TrainConfig(epochs=1, batch_size=4, lr=0.01, augment=("j2k:64",), seed=0)
    model = build_model({"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}})
    increment = train_increment(model, ct_set(), config)
    assert increment.facts.augmentation == ("j2k:64",)


def test_train_cli_accepts_j2k(tmp_path: Path) -> None:
    from tests.learning.test_data import write_png

    for i in range(4):  # 32 x 32: the least a JPEG 2000 plane holds
        write_png(tmp_path / "d" / "images" / f"s{i}.png", (32, 32), value=128)
        write_png(tmp_path / "d" / "masks" / f"s{i}.png", (32, 32))
    args = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "--epochs", "1"]
    result = runner.invoke(train_app, [*args, "--batch-size", "2", "--augment", "flip,j2k:20"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["training"]["augmentation"] == ["flip", "j2k:20"]
    bad = runner.invoke(train_app, [*args, "--augment", "j2k:0.5"])
    assert bad.exit_code != 0 and "augmentation 'j2k:0.5'" in bad.output


def test_a_sites_training_section_takes_j2k() -> None:
    from tclearn.site.config import TrainingSection

    section = TrainingSection(augment=["flip", "j2k:64"])
    config = TrainConfig(**section.model_dump(exclude={"privacy"}))  # as `open_site` builds it
    assert config.augment == ("flip", "j2k:64")
    with pytest.raises(ConfigError, match="j2k:0"):
        TrainConfig(**TrainingSection(augment=["j2k:0"]).model_dump(exclude={"privacy"}))
