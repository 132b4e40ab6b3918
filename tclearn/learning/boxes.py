"""Findings as boxes: connected components of a foreground probability map, each with its extent, its mean
probability and its size.

A 2-D `Box` is in rows and columns, as the picture shows them. A 3-D `Box3D` is in voxels along the volume's
three axes as MONAI reads it, channel first `(C, x, y, z)`: x and y within a slice, z across slices (a NIfTI
file's i, j, k; a DICOM series' columns, rows and slices). Both give the `min` inclusive and the `max` exclusive,
as scikit-image reports them, so `max - min` is the extent. Components touch along edges and corners
(full connectivity) in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.measure import label, regionprops

FINDING = "finding"


@dataclass(frozen=True)
class Box:
    label: str
    min_row: int
    min_col: int
    max_row: int  # exclusive, as scikit-image reports it
    max_col: int
    probability: float
    area: int


@dataclass(frozen=True)
class Box3D:
    label: str
    min_x: int
    min_y: int
    min_z: int
    max_x: int  # exclusive
    max_y: int
    max_z: int
    probability: float
    voxels: int


def _components(prob: np.ndarray, threshold: float, min_size: int) -> Iterator[Any]:
    """The connected components (scikit-image regions) of `prob > threshold` of at least `min_size` pixels
    (voxels)."""
    components = label(prob > threshold, connectivity=prob.ndim)
    for region in regionprops(components, intensity_image=prob):
        if int(region.area) >= min_size:
            yield region


def find_boxes(prob: np.ndarray, threshold: float = 0.5, name: str = FINDING, min_area: int = 1) -> list[Box]:
    """Connected components of the 2-D `prob > threshold` of at least `min_area` pixels, each with its mean
    probability, largest first."""
    boxes = []
    for region in _components(prob, threshold, min_area):
        min_row, min_col, max_row, max_col = (int(v) for v in region.bbox)
        boxes.append(Box(name, min_row, min_col, max_row, max_col, float(region.intensity_mean), int(region.area)))
    return sorted(boxes, key=lambda b: (-b.area, b.min_row, b.min_col))


def find_boxes_3d(prob: np.ndarray, threshold: float = 0.5, name: str = FINDING, min_voxels: int = 1) -> list[Box3D]:
    """Connected components of the 3-D `prob > threshold` `(x, y, z)` of at least `min_voxels` voxels, each with
    its mean probability, largest first."""
    boxes = []
    for region in _components(prob, threshold, min_voxels):
        x0, y0, z0, x1, y1, z1 = (int(v) for v in region.bbox)
        boxes.append(Box3D(name, x0, y0, z0, x1, y1, z1, float(region.intensity_mean), int(region.area)))
    return sorted(boxes, key=lambda b: (-b.voxels, b.min_z, b.min_y, b.min_x))
