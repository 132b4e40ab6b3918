"""Data read from disk as it is used: `FileSamples`, a `Samples` over image files through a MONAI dataset.

3-D volumes do not fit in memory by the hundred (200 CT volumes of 96^3 are 700 MB as float32), so a
`FileSamples` holds file names, not voxels. Items are read through `read_image`/`read_mask` and the site's
`Intensity` (a CT window in Hounsfield units, z-normalisation for MR, or values as stored) in a MONAI
`CacheDataset` that keeps as many prepared items in memory as `cache_bytes` allows and reads the rest from
disk each epoch. Masks are cached as uint8; training and evaluation cast them.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import NormalizeIntensity, ScaleIntensityRange, Transform
from torch.utils.data import Dataset

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import Task, read_image, read_mask
from tclearn.learning.scan import scan_segmentation

DEFAULT_CACHE_BYTES = 256 * 2**20
FLOAT_BYTES, MASK_BYTES = 4, 1


class IntensityKind(enum.StrEnum):
    AS_STORED = "as_stored"  # the values the reader returns (PNG: scaled to [0, 1]; NIfTI, DICOM: as stored, HU)
    CT = "ct"  # a window in Hounsfield units mapped to [0, 1], values outside clipped
    ZSCORE = "zscore"  # zero mean, unit variance per channel (MR, whose units are arbitrary)


@dataclass(frozen=True)
class Intensity:
    """How one site's images become model inputs, as MONAI transforms (configured per site)."""

    kind: IntensityKind = IntensityKind.AS_STORED
    window: tuple[float, float] | None = None  # CT: (lowest, highest) HU kept

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", IntensityKind(self.kind))
        except ValueError:
            raise ConfigError(
                f"unknown intensity {self.kind!r}; expected one of {', '.join(k.value for k in IntensityKind)}"
            ) from None
        if self.kind is IntensityKind.CT:
            if self.window is None or len(self.window) != 2 or not self.window[0] < self.window[1]:
                raise ConfigError(f"a CT intensity needs a window [low, high] in HU with low < high, got {self.window}")
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        elif self.window is not None:
            raise ConfigError(f"a window is for CT intensities; {self.kind.value} takes none")

    @classmethod
    def of_site(cls, record: Mapping[str, Any]) -> Intensity:
        """A site's intensity from its loader record in `coalition.json` (`modality`, `window`, `units`, `dims`):
        display images (8-bit, 2-D) as stored, CT through its window in HU, MR z-normalised."""
        if record.get("units") == "uint8" or record.get("dims") == 2:
            return cls()
        if record.get("modality") == "ct" and record.get("window") is not None:
            low, high = record["window"]
            return cls(IntensityKind.CT, (float(low), float(high)))
        if record.get("modality") == "mr":
            return cls(IntensityKind.ZSCORE)
        return cls()

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.kind is IntensityKind.CT:
            assert self.window is not None
            low, high = self.window
            out = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(image)
        elif self.kind is IntensityKind.ZSCORE:
            out = NormalizeIntensity(channel_wise=True)(image)
        else:
            return image
        return np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=np.float32)


@dataclass(frozen=True)
class FileItem:
    """One item on disk: its name, its image file (or DICOM series folder) and its target.

    The target is a mask file for segmentation, a class index for classification, a 0/1 vector for
    multi-label. `shape` is the image's `(C, *spatial)`, known from a scan of the folder.
    """

    name: str
    image: Path
    target: Path | int | tuple[float, ...]
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """What the item takes in the cache: float32 image and a uint8 mask (segmentation)."""
        voxels = math.prod(self.shape[1:])
        return voxels * (FLOAT_BYTES * self.shape[0] + (MASK_BYTES if isinstance(self.target, Path) else 0))


class _Read(Transform):
    """The deterministic part of reading an item: image, intensity, target. A MONAI `Transform`, so that
    `CacheDataset` keeps its result (it caches up to the first transform that is random or not MONAI's)."""

    def __init__(self, intensity: Intensity) -> None:
        self.intensity = intensity

    def __call__(self, item: FileItem) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.intensity.apply(read_image(item.image))))
        if isinstance(item.target, Path):
            mask = read_mask(item.target)
            if mask.shape[1:] != image.shape[1:]:
                raise DataError(
                    f"image {str(item.image)!r} is {tuple(image.shape[1:])} but its mask {str(item.target)!r} "
                    f"is {mask.shape[1:]}",
                    path=str(item.image),
                )
            return image, torch.from_numpy(mask.astype(np.uint8))
        if isinstance(item.target, int):
            return image, torch.tensor(item.target, dtype=torch.long)
        return image, torch.tensor(item.target, dtype=torch.float32)


def cache_count(items: Sequence[FileItem], cache_bytes: int) -> int:
    """How many items (the first ones) fit in `cache_bytes`."""
    used, count = 0, 0
    for item in items:
        used += item.nbytes
        if used > cache_bytes:
            break
        count += 1
    return count


@dataclass(frozen=True)
class FileSamples:
    """A `Samples` read from files, cached within `cache_bytes` (the rest read from disk when used)."""

    task: Task
    items: tuple[FileItem, ...]
    intensity: Intensity = field(default_factory=Intensity)
    cache_bytes: int = DEFAULT_CACHE_BYTES
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cache_bytes < 0:
            raise ConfigError(f"the cache budget must be >= 0 bytes, got {self.cache_bytes}")
        names = [i.name for i in self.items]
        if len(set(names)) != len(names):
            raise DataError("item names must be unique in a data set")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items)

    def __len__(self) -> int:
        return len(self.items)

    @functools.cached_property
    def _dataset(self) -> CacheDataset:
        # runtime_cache: an item is cached when first read, so opening a site reads nothing up front
        return CacheDataset(
            list(self.items),
            transform=_Read(self.intensity),
            cache_num=cache_count(self.items, self.cache_bytes),
            num_workers=None,
            progress=False,
            copy_cache=False,
            runtime_cache=True,
        )

    def dataset(self) -> Dataset[tuple[torch.Tensor, torch.Tensor]]:
        return self._dataset

    def subset(self, indices: Sequence[int]) -> FileSamples:
        return replace(self, items=tuple(self.items[i] for i in indices))


def segmentation_samples(
    root: str | Path, intensity: Intensity | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> FileSamples:
    """A segmentation folder as a `FileSamples`, checked by `scan_segmentation` before anything trains on it
    (one volume larger than the memory budget is refused: it could never be held)."""
    scanned = scan_segmentation(root, memory_budget=cache_bytes)
    items = tuple(FileItem(i.name, i.image, i.mask, i.shape) for i in scanned)
    return FileSamples(Task.SEGMENTATION, items, intensity or Intensity(), cache_bytes)


def site_intensities(root: Path) -> dict[str, Intensity]:
    """Each site's intensity as `ROOT/coalition.json` records it (`sites`); empty when it records none."""
    description = root / "coalition.json"
    if not description.is_file():
        return {}
    try:
        sites = json.loads(description.read_text()).get("sites", {})
        return {name: Intensity.of_site(record) for name, record in sites.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{str(description)!r} does not describe its sites: {exc}", path=str(description)) from None
