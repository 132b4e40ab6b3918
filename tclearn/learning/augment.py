"""Augmentation and training crops: MONAI random transforms named in the training config.

A member names its augmentations (`TrainConfig.augment`, `[training] augment = ["flip", "intensity"]`); the
names go into the candidate's training facts, so validators and auditors see what was done. The transforms
are seeded from the run's seed: the same data, seed and names give the same batches. Spatial transforms move
a segmentation mask with its image (nearest-neighbour for the mask); intensity transforms touch the image only.
A `patch` (3-D volumes larger than what fits a batch) crops a random window per item, half of them centred on
foreground, as MONAI's `RandCropByPosNegLabeld` does. `j2k:R` (e.g. `j2k:64`) codes half of the images with JPEG
2000 at a ratio drawn log-uniformly in [1, R] (`coding.round_trip`), so that a model learns to read compressed
images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandomizableTransform,
    RandRotate90d,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
)

from tclearn.errors import ConfigError
from tclearn.learning.coding import check_ratio, round_trip

IMAGE, LABEL = "image", "label"
ROTATION = 0.26  # radians (15 degrees), in the axial plane
J2K_PREFIX = "j2k:"

Maker = Callable[[tuple[str, ...], int], list[Any]]


def _flip(keys: tuple[str, ...], dims: int) -> list[Any]:
    return [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(dims)]


def _rotate90(keys: tuple[str, ...], dims: int) -> list[Any]:
    return [RandRotate90d(keys, prob=0.5, spatial_axes=(dims - 2, dims - 1))]


def _rotate(keys: tuple[str, ...], dims: int) -> list[Any]:
    angle = {"range_x": ROTATION} if dims == 2 else {"range_z": ROTATION}
    modes = tuple("nearest" if k == LABEL else "bilinear" for k in keys)
    return [RandRotated(keys, prob=0.5, mode=modes, padding_mode="border", **angle)]  # type: ignore[arg-type]


def _intensity(keys: tuple[str, ...], dims: int) -> list[Any]:
    return [RandScaleIntensityd(IMAGE, factors=0.1, prob=0.5), RandShiftIntensityd(IMAGE, offsets=0.1, prob=0.5)]


def _noise(keys: tuple[str, ...], dims: int) -> list[Any]:
    return [RandGaussianNoised(IMAGE, prob=0.3, std=0.05)]


class RandJpeg2000d(RandomizableTransform, MapTransform):
    """With probability `prob`, the image coded and decoded by JPEG 2000 at a ratio log-uniform in [1, `max_ratio`]."""

    def __init__(self, keys: str, max_ratio: float, prob: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.max_ratio = check_ratio(max_ratio)
        self.ratio = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.ratio = math.exp(self.R.uniform(0.0, math.log(self.max_ratio)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        self.randomize()
        if not self._do_transform:
            return out
        for key in self.key_iterator(out):
            image = np.asarray(torch.as_tensor(out[key]).detach().cpu().numpy(), dtype=np.float32)
            out[key] = torch.from_numpy(round_trip(image, self.ratio))
        return out


def j2k_ratio(name: str) -> float | None:
    """The ratio R of a `j2k:R` name, None for any other name; a `ConfigError` when R is not a number >= 1."""
    if not name.startswith(J2K_PREFIX):
        return None
    text = name[len(J2K_PREFIX) :]
    try:
        return check_ratio(float(text))
    except (ValueError, ConfigError):
        raise ConfigError(f"augmentation {name!r}: the ratio after 'j2k:' must be a number >= 1, e.g. j2k:64") from None


def _maker(name: str) -> Maker | None:
    ratio = j2k_ratio(name)
    if ratio is not None:
        return lambda keys, dims: [RandJpeg2000d(IMAGE, ratio)]
    return AUGMENTATIONS.get(name)


AUGMENTATIONS: dict[str, Maker] = {
    "flip": _flip,
    "rotate90": _rotate90,
    "rotate": _rotate,
    "intensity": _intensity,
    "noise": _noise,
}


def check_augment(names: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple, each known and named once; a `ConfigError` naming the unknown ones."""
    unknown = [n for n in names if _maker(n) is None]
    if unknown:
        raise ConfigError(
            f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)} or j2k:R (R >= 1)"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"augmentations named twice: {', '.join(names)}")
    return tuple(names)


def check_patch(patch: Sequence[int] | None) -> tuple[int, ...] | None:
    if patch is None:
        return None
    values = tuple(patch)
    if len(values) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"patch must be 2 or 3 positive integers (one per spatial axis), got {list(values)}")
    return values


def one_item(result: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """The item a transform returns (a crop of `num_samples=1` returns it in a list)."""
    return result[0] if isinstance(result, list) else result


def training_transform(
    names: Sequence[str], spatial_dims: int, segmentation: bool, seed: int, patch: Sequence[int] | None = None
) -> Compose | None:
    """The seeded MONAI transform for `names` (and a `patch` crop), or None when there is nothing to do."""
    keys = (IMAGE, LABEL) if segmentation else (IMAGE,)
    steps: list[Any] = []
    if patch is not None:
        if len(patch) != spatial_dims:
            raise ConfigError(f"patch {list(patch)} has {len(patch)} axes; the data has {spatial_dims}")
        if segmentation:
            steps.append(
                RandCropByPosNegLabeld(keys, LABEL, spatial_size=list(patch), pos=1.0, neg=1.0, allow_smaller=True)
            )
        else:
            steps.append(RandSpatialCropd(keys, roi_size=list(patch), random_size=False))
    for name in check_augment(names):
        maker = _maker(name)
        assert maker is not None  # checked above
        steps += maker(keys, spatial_dims)
    if not steps:
        return None
    transform = Compose(steps)
    transform.set_random_state(seed=seed)
    return transform
