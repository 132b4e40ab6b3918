"""The console's predictions without a chain: boxes and truth for 2-D images and 3-D volumes, their overlays and
slices, the bounded cache, the lineage's scores."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from services.member.console import scored
from services.member.predictions import Predicted, PredictionCache, find, picture, truth_of
from services.member.schemas import ModelDetail, VoteOut
from tclearn.errors import DataError, NotFoundError
from tclearn.learning.models import ModelConfig

UNET_2D = ModelConfig(arch="unet", spatial_dims=2)  # type: ignore[arg-type]
UNET_3D = ModelConfig(arch="unet", spatial_dims=3)  # type: ignore[arg-type]


class Bright(nn.Module):
    """A stand-in segmentation model: foreground wherever the image is bright (so its boxes are known)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) * 20


def volume_with_cube(shape: tuple[int, int, int] = (16, 16, 12)) -> np.ndarray:
    volume = np.zeros((1, *shape), np.float32)
    volume[0, 4:8, 2:6, 3:7] = 1.0
    return volume


def kept(image: np.ndarray, config: ModelConfig, truth: np.ndarray | None = None, owner: str = "operator") -> Predicted:
    boxes, truth_boxes = find(Bright(), config, image, truth, "scan", 0.5, 1, "cpu")
    return Predicted(PredictionCache.new_id(), owner, 1, "scan", image, boxes, truth_boxes, 0.5, 1)


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_a_volume_gives_3d_boxes_its_truth_and_a_picture_per_slice() -> None:
    volume = volume_with_cube()

    predicted = kept(volume, UNET_3D, truth=truth_of(volume, volume, "mask.nii.gz"))
    inside, outside = picture(predicted, 4), picture(predicted, 0)

    (box,) = predicted.boxes
    assert (box.min_x, box.max_x, box.min_y, box.max_y, box.min_z, box.max_z) == (4, 8, 2, 6, 3, 7)  # type: ignore[union-attr]
    assert predicted.truth is not None and len(predicted.truth) == 1
    assert predicted.dims == 3 and predicted.depth == 12 and 4 in predicted.slices
    assert inside != outside and png_size(inside) == png_size(outside)
    assert picture(predicted) == picture(predicted, predicted.slices[0])


@pytest.mark.parametrize("z", [12, 100])
def test_a_slice_outside_the_volume_is_refused_naming_the_range(z: int) -> None:
    predicted = kept(volume_with_cube(), UNET_3D)
    with pytest.raises(DataError, match="z goes from 0 to 11"):
        picture(predicted, z)


def test_a_2d_image_is_drawn_with_its_truth_beside_it_and_has_no_slices() -> None:
    image = np.zeros((1, 32, 32), np.float32)
    image[0, 8:16, 4:12] = 1.0

    alone, with_truth = kept(image, UNET_2D), kept(image, UNET_2D, truth=truth_of(image, image, "mask.png"))

    assert [(b.min_row, b.max_row, b.min_col, b.max_col) for b in alone.boxes] == [(8, 16, 4, 12)]  # type: ignore[union-attr]
    assert alone.depth == 1 and alone.slices == [0]
    assert png_size(picture(with_truth))[0] == 2 * png_size(picture(alone))[0]
    with pytest.raises(DataError, match="no slice 1"):
        picture(alone, 1)


def test_a_volume_for_a_2d_model_is_refused_naming_its_dimensions() -> None:
    with pytest.raises(DataError, match=r"volume 'scan' has shape \(1, 16, 16, 12\) \(3D\).*2D"):
        find(Bright(), UNET_2D, volume_with_cube(), None, "scan", 0.5, 1, "cpu")


def test_a_mask_of_another_shape_is_refused_naming_the_mask() -> None:
    with pytest.raises(DataError, match=r"mask 'mask\.png' is \(16, 16\) but the image is \(32, 32\)"):
        truth_of(np.zeros((1, 16, 16), np.float32), np.zeros((1, 32, 32), np.float32), "mask.png")


@pytest.mark.parametrize(
    ("entries", "max_bytes", "puts", "left"),
    [
        (3, 1 << 30, 5, 3),  # by count: the oldest go first
        (16, 3 * 32 * 32 * 4, 5, 3),  # by bytes: three 32x32 float32 images fit
        (16, 1, 2, 1),  # one too big for the bound is still kept alone (its page is showing it)
    ],
)
def test_the_cache_is_bounded_by_entries_and_bytes(entries: int, max_bytes: int, puts: int, left: int) -> None:
    cache = PredictionCache(entries, max_bytes)
    made = [kept(np.zeros((1, 32, 32), np.float32), UNET_2D) for _ in range(puts)]

    for p in made:
        cache.put(p)

    assert len(cache) == left
    assert cache.get(made[-1].id, "operator") is made[-1]
    with pytest.raises(NotFoundError, match="upload the image again"):
        cache.get(made[0].id, "operator")


def test_a_prediction_is_its_callers_only() -> None:
    cache = PredictionCache()
    mine = kept(np.zeros((1, 8, 8), np.float32), UNET_2D, owner="0xPeer")
    cache.put(mine)
    with pytest.raises(NotFoundError):
        cache.get(mine.id, "operator")
    assert cache.get(mine.id, "0xPeer") is mine


def vote(g: float, local: float) -> VoteOut:
    return VoteOut(
        validator="0x1", validator_name="h", approve=True, score_global=g, score_local=local, evidence_hash="", block=1
    )


@pytest.mark.parametrize(
    ("votes", "mean_g", "mean_l"),
    [([], None, None), ([vote(0.5, 0.2)], 0.5, 0.2), ([vote(0.5, 0.2), vote(0.7, 0.6)], 0.6, 0.4)],
)
def test_the_lineage_shows_the_mean_of_the_votes_scores(
    votes: list[VoteOut], mean_g: float | None, mean_l: float | None
) -> None:
    model = ModelDetail(
        id=2, parent_id=1, state="committed", head=True, proposer="0x2", proposer_name="hospital-2", model_hash="ab",
        metadata_hash="cd", uri="vault://x", eligible=2, approvals=len(votes), rejections=0, generals=[],
        report_hash=None, reject_reason=None, submitted_block=3, votes=votes,
    )  # fmt: skip

    row = scored(model)

    assert row.votes == len(votes) and row.id == 2 and row.proposer_name == "hospital-2"
    assert row.score_global == pytest.approx(mean_g) if mean_g is not None else row.score_global is None
    assert row.score_local == pytest.approx(mean_l) if mean_l is not None else row.score_local is None
