"""Small CT volumes for tests: int16 NIfTI in Hounsfield units with one spherical finding each."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SIDE = 24


def ct_volumes(root: Path, count: int, seed: int = 0) -> Path:
    """`count` CT-like volumes in HU (int16 NIfTI): air -1000 outside a head of 40 HU, a bright 80 HU blob."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    grid = np.indices((SIDE,) * 3)
    for k in range(count):
        centre = rng.integers(5, SIDE - 5, size=3)
        blob = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= 9
        image = np.full((SIDE,) * 3, 40, np.int16) + rng.normal(0, 5, (SIDE,) * 3).astype(np.int16)
        image[:2] = -1000
        image[blob] = 80
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "images" / f"v{k:02d}.nii.gz")
        nib.save(nib.Nifti1Image(blob.astype(np.uint8), np.eye(4)), root / "masks" / f"v{k:02d}.nii.gz")
    return root
