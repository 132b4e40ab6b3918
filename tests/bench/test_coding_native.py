"""bench/coding_native.py: slices coded at 512 x 512 and resized to the model's side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.coding_native import augmented_native, coded, native_slices, shrink, shrink_masks


@pytest.fixture(scope="module")
def slices():
    return native_slices(4, seed=0, split=0, side=128)


def test_masks_resized_nearest_from_the_truth(slices) -> None:
    assert slices.stored.shape == (4, 512, 512) and slices.stored.dtype == np.int16
    assert slices.masks.shape == (4, 1, 128, 128)
    assert set(torch.unique(slices.masks).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(("shape", "value"), [((1, 1, 512, 512), 40.0), ((2, 1, 256, 256), -1000.0)])
def test_shrink_keeps_a_constant_image(shape: tuple[int, ...], value: float) -> None:
    expected = torch.full((shape[0], 1, 128, 128), value)
    assert torch.allclose(shrink(torch.full(shape, value), 128), expected, atol=1e-3)


def test_shrink_masks_keeps_binary_blocks() -> None:
    mask = torch.zeros(1, 1, 512, 512)
    mask[..., 128:256, 256:512] = 1.0
    small = shrink_masks(mask, 128)
    assert small.sum() == 32 * 64 and small[..., 32:64, 64:128].all()


@pytest.mark.parametrize("ratio", [20.0, 64.0])
def test_coded_at_native_side_meets_the_ratio(slices, ratio: float) -> None:
    stored = coded(slices, None)[0]
    lossy, raw, total = coded(slices, ratio)
    assert raw == 4 * 512 * 512 * 2
    assert raw / total == pytest.approx(ratio, rel=0.15)
    assert lossy.images.shape == stored.images.shape == (4, 1, 128, 128)
    assert not torch.equal(lossy.images, stored.images)
    assert torch.equal(lossy.targets, slices.masks)


def test_augmentation_codes_some_reads_and_is_seeded(slices) -> None:
    stored = coded(slices, None)[0].images
    reads = augmented_native(slices, 64.0, seed=3).dataset()
    first = [reads[k][0] for k in range(4)]
    again = augmented_native(slices, 64.0, seed=3).dataset()
    assert all(torch.equal(again[k][0], first[k]) for k in range(4))
    changed = [not torch.equal(first[k], stored[k]) for k in range(4)]
    assert any(changed)
