"""bench/coding.py's native mode: CT slices stored and coded at 512 x 512, seen by the model at 128 x 128.

As a real pipeline does: each slice is coded (or not) as the archive stores it, at its scanner's 512 x 512
in int16 HU, then resized to the model's input (bilinear with antialiasing: a 4:1 downsampling without it
would alias the scanner noise). Masks are resized nearest from the uncoded truth. The `j2k:64` augmentation of
this mode codes half of the training slices as they are read (fresh draws every epoch), at a ratio log-uniform
in [1, 64], at 512 x 512, before the resize.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from tclearn.learning.coding import coded_round_trip
from tclearn.learning.data import ImageData, Task
from tclearn.learning.evaluate import evaluate
from tclearn.learning.samples import Samples, derived
from tclearn.learning.synth import draw_case, profile_for, to_int16

NATIVE = 512
AUGMENT_PROB = 0.5  # as `j2k:R` (tclearn.learning.augment.RandJpeg2000d)


@dataclass(frozen=True)
class NativeSlices:
    """Slices as stored, `(N, 512, 512)` int16 HU, with their masks at the model's side `(N, 1, S, S)`."""

    stored: np.ndarray
    masks: torch.Tensor
    split: int

    def __len__(self) -> int:
        return len(self.stored)


def shrink(images: torch.Tensor, side: int) -> torch.Tensor:
    """`(N, 1, H, W)` float images resized to `side` x `side`, bilinear with antialiasing."""
    return functional.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def shrink_masks(masks: torch.Tensor, side: int) -> torch.Tensor:
    """`(N, 1, H, W)` 0/1 masks resized to `side` x `side`, nearest."""
    return functional.interpolate(masks, size=(side, side), mode="nearest")


def native_slices(count: int, seed: int, split: int, side: int) -> NativeSlices:
    """`count` 512 x 512 CT slices, the first three hospitals in turn (as bench/coding.py's `ct_slices`)."""
    rng = np.random.default_rng([seed, split])
    stored, masks = [], []
    for k in range(count):
        hu, mask = draw_case(profile_for(k % 3, seed), (NATIVE, NATIVE), rng)
        stored.append(to_int16(hu))
        masks.append(mask.astype(np.float32)[np.newaxis])
    small = shrink_masks(torch.from_numpy(np.stack(masks)), side)
    return NativeSlices(np.stack(stored), small, split)


def _names(slices: NativeSlices) -> tuple[str, ...]:
    return tuple(f"case-{slices.split}-{k:04d}" for k in range(len(slices)))


def _plane(picture: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture, dtype=np.float32))[np.newaxis, np.newaxis]


def coded(slices: NativeSlices, ratio: float | None) -> tuple[ImageData, int, int]:
    """The slices coded at `ratio` at 512 x 512 (None: as stored), resized; with raw and coded bytes."""
    side = int(slices.masks.shape[-1])
    images, raw, total = [], 0, 0
    for picture in slices.stored:
        if ratio is None:
            images.append(shrink(_plane(picture), side))
            continue
        restored, raw_bytes, coded_bytes = coded_round_trip(picture[np.newaxis].astype(np.float32), ratio)
        raw, total = raw + raw_bytes, total + coded_bytes
        images.append(shrink(torch.from_numpy(restored)[np.newaxis], side))
    return ImageData(Task.SEGMENTATION, torch.cat(images), slices.masks, _names(slices)), raw, total


def augmented_native(slices: NativeSlices, max_ratio: float, seed: int) -> Samples:
    """The slices as training reads them: each read, with probability 1/2, coded at 512 x 512 at a ratio
    log-uniform in [1, `max_ratio`], then resized (a fresh draw per read, seeded by `seed`)."""
    rng = np.random.default_rng([seed, 64])
    side = int(slices.masks.shape[-1])
    index = ImageData(Task.SEGMENTATION, torch.arange(len(slices)).view(-1, 1).float(), slices.masks, _names(slices))

    def read(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picture = slices.stored[int(x.item())].astype(np.float32)[np.newaxis]
        if rng.uniform() < AUGMENT_PROB:
            picture = coded_round_trip(picture, math.exp(rng.uniform(0.0, math.log(max_ratio))))[0]
        return shrink(torch.from_numpy(picture)[np.newaxis], side)[0], y

    return derived(index, read)


def native_scores(model: nn.Module, test: NativeSlices, ratios: tuple[float, ...]) -> dict[str, object]:
    """Dice on `test` as stored and coded at each ratio at 512 x 512, resized; achieved ratios (raw / coded)."""
    model.eval()
    plain = evaluate(model, coded(test, None)[0], 16)
    by_ratio, achieved = {}, {}
    for ratio in ratios:
        data, raw, total = coded(test, ratio)
        by_ratio[f"{ratio:g}"] = round(evaluate(model, data, 16).score, 4)
        achieved[f"{ratio:g}"] = round(raw / total, 3)
    return {"as_stored": round(plain.score, 4), "by_ratio": by_ratio, "achieved_ratio": achieved}
