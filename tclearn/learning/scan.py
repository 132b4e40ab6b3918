"""The preflight check of a segmentation folder: every problem found, as one `DataError`, before training.

`scan_segmentation(ROOT)` walks `ROOT/images` and `ROOT/masks` (the layout of `data.py`) and returns one
`ScanItem` per image: its mask, its shape as `read_image` will return it and its number of spatial axes.
Images are sized from their headers (PIL's header, the JPEG 2000 SIZ marker, nibabel's header, pydicom with
`stop_before_pixels`), so a folder of large volumes is checked without loading them; masks are read whole,
since only their voxels say whether the set has any foreground. It reads and never writes. A disk-backed
loader takes the items as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import find_mask, image_kind, list_images, ras_shape, read_mask, stem
from tclearn.learning.dicom import file_problem, read_header, read_series_headers, series_affine

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class ScanItem:
    """One checked image and its mask. `shape` is `(C, *spatial)`, as `read_image` returns the image."""

    name: str
    image: Path
    mask: Path
    shape: tuple[int, ...]
    spatial_dims: int

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def nbytes(self) -> int:
        """The image's size in memory as float32."""
        return math.prod(self.shape) * FLOAT32_BYTES


def image_shape(path: Path) -> tuple[int, ...]:
    """The `(C, *spatial)` shape `read_image(path)` returns, from headers only; a `DataError` naming the file."""
    if path.is_dir():
        headers = read_series_headers(path)
        first = headers[0]
        return (1, *ras_shape((first.rows, first.columns, len(headers)), series_affine(headers)))
    kind = image_kind(path)
    if kind == "dicom":
        header = read_header(path)
        if (problem := file_problem(header)) is not None:
            raise DataError(problem, path=str(path))
        return (header.samples, header.rows, header.columns)
    try:
        if kind == "j2k":
            return _j2k_shape(path)
        return _nifti_shape(path) if kind == "nifti" else _pil_shape(path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}", path=str(path)) from None


def _pil_shape(path: Path) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(path) as picture:
        shape = (len(picture.getbands()), picture.height, picture.width)
        picture.verify()  # chunk checksums, without decoding the pixels
    return shape


def _j2k_shape(path: Path) -> tuple[int, ...]:
    from openjpeg.utils import get_parameters

    header = get_parameters(str(path))
    return (int(header["samples_per_pixel"]), int(header["rows"]), int(header["columns"]))


def _nifti_shape(path: Path) -> tuple[int, ...]:
    import nibabel as nib

    image = nib.load(path)
    if not isinstance(image, nib.spatialimages.SpatialImage):
        raise DataError(f"{str(path)!r} is not a NIfTI image", path=str(path))
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return (1, *ras_shape(shape, image.affine))
    if len(shape) == 4:  # channels last in the file, first once read
        return (shape[3], *ras_shape(shape[:3], image.affine))
    raise DataError(f"NIfTI image {str(path)!r} has {len(shape)} axes {shape}; expected 2-D, 3-D or 3-D + channels")


def _check_budget(item_path: Path, shape: Sequence[int], memory_budget: int | None) -> None:
    if memory_budget is None:
        return
    nbytes = math.prod(shape) * FLOAT32_BYTES
    if nbytes > memory_budget:
        raise DataError(
            f"image {str(item_path)!r} of shape {tuple(shape)} needs {nbytes:,} bytes as float32, more than the "
            f"memory budget of {memory_budget:,} bytes",
            path=str(item_path),
        )


def _dims_word(spatial_dims: int) -> str:
    return f"a {spatial_dims}-D {'volume' if spatial_dims == 3 else 'image'}"


def scan_segmentation(root: str | Path, *, memory_budget: int | None = None) -> tuple[ScanItem, ...]:
    """The items of `ROOT/images` + `ROOT/masks`, checked; the first problem as a `DataError` naming the file.

    Refused: a missing `masks` folder or mask, an empty mask folder, a mask set that is all background,
    2-D and 3-D images in one folder, an image and mask of different shapes, an unreadable file, a DICOM
    series that is not one regular volume (see `dicom.py`), a CT without rescale tags, and an image larger
    than `memory_budget` bytes as float32.
    """
    if memory_budget is not None and memory_budget <= 0:
        raise ConfigError(f"memory budget must be a positive number of bytes, got {memory_budget!r}")
    root = Path(root)
    images = list_images(root / "images")
    masks_dir = root / "masks"
    if not masks_dir.is_dir():
        raise DataError(f"segmentation folder {str(root)!r} has no 'masks' sub-folder", path=str(root))
    if not any(masks_dir.iterdir()):
        raise DataError(f"mask folder {str(masks_dir)!r} is empty: every image needs a mask", path=str(masks_dir))
    items: list[ScanItem] = []
    foreground = False
    for image in images:
        mask = find_mask(image, masks_dir)
        shape = image_shape(image)
        spatial_dims = len(shape) - 1
        if items and spatial_dims != items[0].spatial_dims:
            raise DataError(
                f"image {str(image)!r} is {_dims_word(spatial_dims)} but {str(items[0].image)!r} is "
                f"{_dims_word(items[0].spatial_dims)}: one folder holds 2-D images or 3-D volumes, not both",
                path=str(image),
            )
        _check_budget(image, shape, memory_budget)
        mask_shape = image_shape(mask)
        if mask_shape[1:] != shape[1:]:
            raise DataError(
                f"image {str(image)!r} is {shape[1:]} but its mask {str(mask)!r} is {mask_shape[1:]}",
                path=str(image),
            )
        foreground = foreground or bool(np.any(read_mask(mask)))
        items.append(ScanItem(stem(image), image, mask, shape, spatial_dims))
    if not foreground:
        raise DataError(
            f"every mask in {str(masks_dir)!r} is background ({len(items)} masks, no foreground voxel): "
            "nothing to learn from; check the masks' values",
            path=str(masks_dir),
        )
    return tuple(items)
