"""Datasets a member trains on and a validator tests on, read from folders through MONAI's readers.

Layouts (the same one `tclearn data synth` writes):

- segmentation: `ROOT/images/<name>.<ext>` and `ROOT/masks/<name>.<ext>`, matched by name;
- classification: `ROOT/<label>/<name>.<ext>`, one sub-folder per class;
- multi-label: `ROOT/images/<name>.<ext>` and `ROOT/labels.csv` (`multilabel.py`);
- tabular: one CSV file with a label column, every other column a numeric feature.

Images are PNG/JPEG/TIFF (PIL), JPEG 2000 (`.jp2`/`.j2k`/`.j2c`, `coding.py`), NIfTI (nibabel) or DICOM
(pydicom, JPEG 2000 transfer syntaxes included): a `.dcm` file is one slice, a sub-folder of `.dcm` slices is
one series, one volume (`dicom.py`). PIL images are display pictures, scaled to [0, 1] by their type's range;
so are unsigned JPEG 2000 images (8-bit /255, 16-bit /65535: a PNG and its `.jp2` read the same). NIfTI,
DICOM and signed JPEG 2000 keep their real values (Hounsfield units for CT), and volumes are turned to RAS
axes (as `nibabel.as_closest_canonical`) so that a DICOM series and a NIfTI mask of the same scan line up
voxel for voxel. Every user mistake is a `DataError` that names the file.
"""

from __future__ import annotations

import csv
import enum
import functools
import glob
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from monai.data import NibabelReader, PILReader
from monai.transforms import LoadImage, Resize
from nibabel.orientations import apply_orientation, io_orientation
from torch.utils.data import Dataset, TensorDataset

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.coding import J2K_SUFFIXES, decode
from tclearn.learning.dicom import read_series, read_slice

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm",)
IMAGE_SUFFIXES = PIL_SUFFIXES + J2K_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES


class Task(enum.StrEnum):
    SEGMENTATION = "segmentation"
    CLASSIFICATION = "classification"
    MULTILABEL = "multilabel"  # several labels per image, each 0 or 1 (seed 003: ten brain regions)


@dataclass(frozen=True)
class ImageData:
    """A data set held in memory (a `Samples`): inputs `(N, C, *spatial)` (or `(N, F)` for tabular) and targets.

    Segmentation targets are binary masks `(N, 1, *spatial)` of 0.0/1.0; classification targets are
    class indices `(N,)` (int64) into `classes`; multi-label targets are `(N, K)` of 0.0/1.0, one column per
    label named in `classes`.
    """

    task: Task
    images: torch.Tensor
    targets: torch.Tensor
    names: tuple[str, ...]
    classes: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # a table's feature columns, in order (`tclearn.learning.tables`)

    def __post_init__(self) -> None:
        if self.columns and (self.images.ndim != 2 or self.images.shape[1] != len(self.columns)):
            raise DataError(f"{len(self.columns)} column names for inputs of shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.targets) or len(self.images) != len(self.names):
            raise DataError(
                f"{len(self.images)} inputs, {len(self.targets)} targets and {len(self.names)} names differ"
            )

    def __len__(self) -> int:
        return len(self.names)

    def dataset(self) -> Dataset[tuple[torch.Tensor, torch.Tensor]]:
        return cast(Dataset[tuple[torch.Tensor, torch.Tensor]], TensorDataset(self.images, self.targets))

    def subset(self, indices: Sequence[int]) -> ImageData:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageData(
            self.task,
            self.images[idx],
            self.targets[idx],
            tuple(self.names[i] for i in indices),
            self.classes,
        )


def stem(path: Path) -> str:
    """The image's name without its suffix (`scan.nii.gz` -> `scan`; a series folder's own name)."""
    name = path.name
    if path.is_dir():
        return name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_series(path: Path) -> bool:
    """A sub-folder of an image folder: one DICOM series (hidden folders are not data)."""
    return path.is_dir() and not path.name.startswith(".")


def is_image(path: Path) -> bool:
    return (path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)) or is_series(path)


def list_images(folder: Path) -> list[Path]:
    """Image files and series folders directly in `folder`, sorted by name; a `DataError` when there are none."""
    if not folder.is_dir():
        raise NotFoundError(f"data folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if is_image(p))
    if not files:
        raise DataError(
            f"data folder {str(folder)!r} holds no images "
            f"(expected {', '.join(IMAGE_SUFFIXES)} files or DICOM series folders)"
        )
    return files


@functools.cache
def _loader_for(kind: str) -> LoadImage:
    """One loader per reader kind, built once."""
    # PIL: keep rows x columns as the picture shows them
    reader = PILReader(reverse_indexing=False) if kind == "pil" else NibabelReader()
    return LoadImage(reader=reader, image_only=True, ensure_channel_first=True, dtype=None)


def image_kind(path: Path) -> str:
    """`pil`, `j2k`, `nifti` or `dicom` by the file's suffix; a `DataError` for any other file."""
    name = path.name.lower()
    kinds = (("pil", PIL_SUFFIXES), ("j2k", J2K_SUFFIXES), ("nifti", NIFTI_SUFFIXES), ("dicom", DICOM_SUFFIXES))
    for kind, suffixes in kinds:
        if name.endswith(suffixes):
            return kind
    raise DataError(f"unsupported image type {path.name!r}; expected one of {', '.join(IMAGE_SUFFIXES)}")


def _normalise(array: np.ndarray, mode: str = "") -> np.ndarray:
    """A display picture's integers scaled to [0, 1] by their range; float pictures kept as they are.

    PIL hands 16-bit pictures (mode `I;16`) over as int32: their range is that of uint16 all the same.
    """
    if mode.startswith("I;16"):
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return (array.astype(np.float32) - info.min) / float(info.max - info.min)
    return array.astype(np.float32)


def ras_shape(spatial: Sequence[int], affine: np.ndarray) -> tuple[int, ...]:
    """The spatial shape a volume of `spatial` voxels with `affine` has once turned to RAS axes."""
    shape = [0] * len(spatial)
    for size, (axis, _flip) in zip(spatial, io_orientation(affine), strict=True):
        shape[int(axis)] = int(size)
    return tuple(shape)


def to_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A channel-first volume `(C, X, Y, Z)` with its voxel axes permuted and flipped to RAS.

    Only whole axes move (no resampling); an oblique scan goes to its closest RAS axes.
    """
    turned = apply_orientation(np.moveaxis(array, 0, -1), io_orientation(affine))
    return np.ascontiguousarray(np.moveaxis(turned, -1, 0))


# MONAI's readers warn about things that are not the user's concern: a GPU DICOM decoder plugin that a CPU
# machine does not have (`LoadImage` builds every reader it knows), and read-only NumPy buffers (the array is
# copied right below).
_READER_NOISE = ("NvImgCodecPydicomReader: nvImageCodec", "The given NumPy array is not writable")


def read_j2k(path: Path) -> np.ndarray:
    """A JPEG 2000 file as float32 `(C, rows, columns)`: unsigned scaled to [0, 1] as PIL pictures, signed as is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}", path=str(path)) from None
    pixels = decode(data, str(path))
    planes = pixels[np.newaxis] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    return planes.astype(np.float32) if pixels.dtype.kind == "i" else _normalise(planes)


def read_image(path: Path) -> np.ndarray:
    """One image as float32 `(C, *spatial)`; a `DataError` naming the file when it cannot be read.

    PIL pictures are scaled to [0, 1]; NIfTI and DICOM keep their real values, volumes in RAS axes.
    """
    if path.is_dir():
        volume, affine = read_series(path)
        return to_ras(volume, affine)
    kind = image_kind(path)
    if kind == "dicom":
        return read_slice(path)
    if kind == "j2k":
        return read_j2k(path)
    try:
        with warnings.catch_warnings():
            for message in _READER_NOISE:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            data = _loader_for(kind)(str(path))
    except Exception as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}", path=str(path)) from None
    array = np.asarray(data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data)
    if kind == "pil":
        return _normalise(array, str(getattr(data, "meta", {}).get("mode", "")))
    array = array.astype(np.float32)
    if array.ndim == 4:
        array = to_ras(array, np.asarray(data.affine, dtype=np.float64))
    return array


def read_mask(path: Path) -> np.ndarray:
    """A mask as a binary float32 `(1, *spatial)`: a pixel above zero in any channel is foreground."""
    array = read_image(path)
    return (array.max(axis=0, keepdims=True) > 0).astype(np.float32)


def _resize(array: np.ndarray, size: Sequence[int], mode: str) -> np.ndarray:
    out = Resize(spatial_size=tuple(size), mode=mode)(torch.from_numpy(array))
    return np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out)


def _stack(arrays: list[np.ndarray], files: list[Path], size: Sequence[int] | None) -> torch.Tensor:
    if size is None:
        first = arrays[0].shape
        for array, file in zip(arrays, files, strict=True):
            if array.shape != first:
                raise DataError(
                    f"image {str(file)!r} has shape {array.shape} but {str(files[0])!r} has {first}; "
                    "give a common size to resize them",
                    path=str(file),
                )
    return torch.from_numpy(np.stack(arrays))


def read_images(files: list[Path], size: Sequence[int] | None = None) -> torch.Tensor:
    """`files` read and stacked `(N, C, *spatial)`, resized to `size` when given (else all of one shape)."""
    arrays = [read_image(f) for f in files]
    if size is not None:
        arrays = [_resize(a, size, "bilinear") for a in arrays]
    return _stack(arrays, files, size)


def find_mask(image: Path, masks: Path) -> Path:
    """The mask whose name matches `image` in the `masks` folder (any supported suffix, or a series folder)."""
    wanted = stem(image)
    candidates = [masks / wanted, *sorted(masks.glob(f"{glob.escape(wanted)}.*"))]
    for candidate in candidates:
        if is_image(candidate) and stem(candidate) == wanted:
            return candidate
    raise DataError(
        f"no mask for image {str(image)!r}: expected {masks / wanted!s}.<ext> (or a series folder "
        f"{masks / wanted!s}/) in {str(masks)!r}",
        path=str(image),
    )


def load_segmentation(root: str | Path, size: Sequence[int] | None = None) -> ImageData:
    """`ROOT/images` with a mask of the same name in `ROOT/masks` for each image."""
    root = Path(root)
    files = list_images(root / "images")
    masks_dir = root / "masks"
    if not masks_dir.is_dir():
        raise DataError(f"segmentation folder {str(root)!r} has no 'masks' sub-folder")
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for file in files:
        mask_file = find_mask(file, masks_dir)
        image, mask = read_image(file), read_mask(mask_file)
        if image.shape[1:] != mask.shape[1:]:
            raise DataError(
                f"image {str(file)!r} is {image.shape[1:]} but its mask {str(mask_file)!r} is {mask.shape[1:]}",
                path=str(file),
            )
        if size is not None:
            image, mask = _resize(image, size, "bilinear"), _resize(mask, size, "nearest")
        images.append(image)
        masks.append(mask)
    return ImageData(
        Task.SEGMENTATION,
        _stack(images, files, size),
        _stack(masks, files, size),
        tuple(f.name for f in files),
    )


def load_classification(root: str | Path, size: Sequence[int] | None = None) -> ImageData:
    """`ROOT/<label>/<image>`: the sub-folder names, sorted, are the classes."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"data folder {str(root)!r} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"classification folder {str(root)!r} has no class sub-folders")
    files: list[Path] = []
    labels: list[int] = []
    for index, label in enumerate(classes):
        for file in list_images(root / label):
            files.append(file)
            labels.append(index)
    return ImageData(
        Task.CLASSIFICATION,
        read_images(files, size),
        torch.tensor(labels, dtype=torch.long),
        tuple(f"{f.parent.name}/{f.name}" for f in files),
        tuple(classes),
    )


def load_csv(path: str | Path, label_column: str = "label") -> ImageData:
    """A CSV table: `label_column` holds the class, every other column a numeric feature."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"CSV file {str(path)!r} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(f"CSV file {str(path)!r} has no rows", path=str(path))
    if label_column not in rows[0]:
        raise DataError(
            f"CSV file {str(path)!r} has no column {label_column!r}; columns: {', '.join(rows[0])}",
            path=str(path),
        )
    features = [c for c in rows[0] if c != label_column]
    classes = sorted({r[label_column] for r in rows})
    matrix: list[list[float]] = []
    for line, row in enumerate(rows, start=2):
        try:
            matrix.append([float(row[c]) for c in features])
        except (TypeError, ValueError):
            raise DataError(f"{str(path)!r} line {line}: a feature is not a number", path=str(path)) from None
    return ImageData(
        Task.CLASSIFICATION,
        torch.tensor(matrix, dtype=torch.float32),
        torch.tensor([classes.index(r[label_column]) for r in rows], dtype=torch.long),
        tuple(f"row{i}" for i in range(len(rows))),
        tuple(classes),
    )
