"""The preflight check of a segmentation folder: good folders give typed items, every bad one its error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import read_image, read_mask
from tclearn.learning.scan import ScanItem, scan_segmentation
from tests.learning.dicom import AXIAL, series_affine_ras, write_dicom, write_series


def write_png(path: Path, shape: tuple[int, int] = (16, 16), value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros(shape, np.uint8)
    array[2:6, 3:9] = value
    Image.fromarray(array).save(path)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)


def block(shape: tuple[int, ...], value: float = 1.0, dtype: type = np.float32) -> np.ndarray:
    array = np.zeros(shape, dtype)
    array[tuple(slice(1, 3) for _ in shape)] = value
    return array


def png_folder(root: Path) -> Path:
    for name in ("a", "b"):
        write_png(root / "images" / f"{name}.png", value=128)
        write_png(root / "masks" / f"{name}.png")
    return root


def nifti_folder(root: Path) -> Path:
    for name in ("a", "b"):
        write_nifti(root / "images" / f"{name}.nii.gz", block((6, 5, 4), 300.0))
        write_nifti(root / "masks" / f"{name}.nii.gz", block((6, 5, 4), dtype=np.uint8))
    return root


def series_folder(root: Path) -> Path:
    stored = block((4, 6, 5), 1100, np.int16)  # slices, rows, columns
    write_series(root / "images" / "ct1", stored)
    write_nifti(root / "masks" / "ct1.nii.gz", (stored > 0).transpose(1, 2, 0).astype(np.uint8), series_affine_ras())
    write_series(root / "images" / "ct2", stored)
    mask = (stored > 0).astype(np.int16)
    write_series(root / "masks" / "ct2", mask, modality="OT", rescale=None)  # a mask that is itself a series
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- good folders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "shape", "dims"),
    [(png_folder, (1, 16, 16), 2), (nifti_folder, (1, 6, 5, 4), 3), (series_folder, (1, 5, 6, 4), 3)],
)
def test_good_folder_gives_items_with_the_shapes_read_image_returns(
    tmp_path: Path, make: Callable[[Path], Path], shape: tuple[int, ...], dims: int
) -> None:
    items = scan_segmentation(make(tmp_path))
    assert len(items) == 2 and all(isinstance(item, ScanItem) for item in items)
    for item in items:
        assert item.shape == shape and item.spatial_dims == dims
        assert read_image(item.image).shape == item.shape  # the header's shape is the one the reader returns
        assert read_image(item.mask).shape[1:] == item.spatial_shape
        assert read_mask(item.mask).any()
        assert item.image.parent.name == "images" and item.mask.parent.name == "masks"
    assert [item.name for item in items] == sorted(item.name for item in items)


def test_oblique_header_shapes_match_the_reader(tmp_path: Path) -> None:
    affine = np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # axes permuted, one flipped
    write_nifti(tmp_path / "images" / "v.nii.gz", block((2, 3, 4), 5.0), affine)
    write_nifti(tmp_path / "masks" / "v.nii.gz", block((2, 3, 4), dtype=np.uint8), affine)
    coronal = (1, 0, 0, 0, 0, -1)
    write_series(tmp_path / "images" / "w", block((3, 4, 5), 1100, np.int16), orientation=coronal)
    write_series(tmp_path / "masks" / "w", block((3, 4, 5), 1, np.int16), orientation=coronal)
    items = scan_segmentation(tmp_path)
    assert [item.shape for item in items] == [(1, 4, 2, 3), (1, 5, 3, 4)]
    assert all(read_image(item.image).shape == item.shape for item in items)


def test_an_image_without_findings_is_fine_when_another_has_some(tmp_path: Path) -> None:
    png_folder(tmp_path)
    write_png(tmp_path / "images" / "c.png")
    write_png(tmp_path / "masks" / "c.png", value=0)
    assert len(scan_segmentation(tmp_path)) == 3


def test_memory_budget_at_the_limit_passes(tmp_path: Path) -> None:
    nifti_folder(tmp_path)
    assert len(scan_segmentation(tmp_path, memory_budget=BUDGET)) == 2
    with pytest.raises(ConfigError, match="memory budget"):
        scan_segmentation(tmp_path, memory_budget=0)


# --- bad folders: one DataError naming the file and the problem; nothing written --------------------------


def mixed_dims(root: Path) -> None:
    png_folder(root)
    write_nifti(root / "images" / "c.nii.gz", block((6, 5, 4), 300.0))
    write_nifti(root / "masks" / "c.nii.gz", block((6, 5, 4)))


def shape_mismatch(root: Path) -> None:
    nifti_folder(root)
    write_nifti(root / "masks" / "b.nii.gz", block((6, 5, 3)))


def empty_masks(root: Path) -> None:
    write_png(root / "images" / "a.png")
    (root / "masks").mkdir()


def all_background(root: Path) -> None:
    for name in ("a", "b"):
        write_png(root / "images" / f"{name}.png")
        write_png(root / "masks" / f"{name}.png", value=0)


def unreadable_png(root: Path) -> None:
    png_folder(root)
    (root / "images" / "broken.png").write_bytes(b"not a png")
    write_png(root / "masks" / "broken.png")


def unreadable_nifti_mask(root: Path) -> None:
    nifti_folder(root)
    (root / "masks" / "b.nii.gz").write_bytes(b"\x1f\x8b garbage")


def unreadable_slice(root: Path) -> None:
    series_folder(root)
    (root / "images" / "ct1" / "slice002.dcm").write_bytes(b"DICM? no")


BUDGET = 6 * 5 * 4 * 4  # bytes: one of nifti_folder's volumes as float32


def over_budget(root: Path) -> None:
    nifti_folder(root)
    write_nifti(root / "images" / "big.nii.gz", block((16, 16, 16)))
    write_nifti(root / "masks" / "big.nii.gz", block((16, 16, 16)))


def missing_slice(root: Path) -> None:
    series_folder(root)
    (root / "images" / "ct2" / "slice004.dcm").unlink()  # the third of four slices (see write_series)


def add_slice(
    folder: Path, pixels: np.ndarray, z: float, *, orientation: tuple[float, ...] = AXIAL, same_series: bool = True
) -> None:
    """One more CT slice `slice000.dcm` at height `z`, of the folder's series unless told otherwise."""
    import pydicom

    uid = str(pydicom.dcmread(folder / "slice001.dcm", stop_before_pixels=True).SeriesInstanceUID)
    write_dicom(
        folder / "slice000.dcm",
        pixels,
        modality="CT",
        rescale=(1.0, -1024.0),
        position=(0.0, 0.0, z),
        orientation=orientation,
        series_uid=uid if same_series else None,
    )


def mixed_orientations(root: Path) -> None:
    series_folder(root)
    add_slice(root / "images" / "ct1", np.zeros((6, 5), np.int16), 8.0, orientation=(0, 1, 0, 0, 0, -1))


def mixed_series(root: Path) -> None:
    series_folder(root)
    add_slice(root / "images" / "ct1", np.zeros((6, 5), np.int16), 8.0, same_series=False)


def slice_shapes(root: Path) -> None:
    series_folder(root)
    add_slice(root / "images" / "ct1", np.zeros((7, 5), np.int16), 8.0)


def ct_without_rescale(root: Path) -> None:
    series_folder(root)
    write_series(root / "images" / "ct1", np.zeros((4, 6, 5), np.int16), rescale=None)


def two_slices_one_place(root: Path) -> None:
    series_folder(root)
    write_series(root / "images" / "ct1", np.zeros((4, 6, 5), np.int16), step=0.0)


def missing_mask(root: Path) -> None:
    series_folder(root)
    write_series(root / "images" / "ct3", np.zeros((2, 6, 5), np.int16))


def no_masks_folder(root: Path) -> None:
    write_png(root / "images" / "a.png")


BAD = {
    "2-D and 3-D mixed": (mixed_dims, r"c\.nii\.gz' is a 3-D volume but .*a\.png' is a 2-D image"),
    "image and mask shapes differ": (shape_mismatch, r"b\.nii\.gz' is \(6, 5, 4\) but its mask .*b\.nii\.gz' is"),
    "empty mask set": (empty_masks, r"masks' is empty"),
    "all background": (all_background, r"every mask in .*masks' is background"),
    "unreadable image": (unreadable_png, r"cannot read image .*broken\.png'"),
    "unreadable mask": (unreadable_nifti_mask, r"cannot read image .*masks/b\.nii\.gz'"),
    "unreadable slice": (unreadable_slice, r"cannot read DICOM file .*ct1/slice002\.dcm'"),
    "over the memory budget": (over_budget, r"big\.nii\.gz' of shape \(1, 16, 16, 16\) needs 16,384 bytes"),
    "missing slice": (missing_slice, r"ct2' has 1 missing slice\(s\): 4 mm between"),
    "mixed orientations": (mixed_orientations, r"ct1' mixes orientations: slice00\d\.dcm has"),
    "mixed series": (mixed_series, r"ct1' mixes series"),
    "slice shapes differ": (slice_shapes, r"ct1' has slices of different shapes: .*7x5"),
    "CT without rescale tags": (ct_without_rescale, r"ct1/slice\d+\.dcm' has no RescaleSlope/RescaleIntercept"),
    "two slices at one position": (two_slices_one_place, r"ct1' has two slices at one position"),
    "missing mask": (missing_mask, r"no mask for image .*ct3'"),
    "no masks folder": (no_masks_folder, r"has no 'masks' sub-folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folder_is_one_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=message):
        scan_segmentation(tmp_path, memory_budget=BUDGET if make is over_budget else None)
    assert snapshot(tmp_path) == before  # nothing written, nothing moved


def test_uneven_spacing_is_not_called_a_missing_slice(tmp_path: Path) -> None:
    series_folder(tmp_path)
    add_slice(tmp_path / "images" / "ct1", np.zeros((6, 5), np.int16), 8.5)
    with pytest.raises(DataError, match=r"ct1' has uneven slice spacing: 2\.5 mm between"):
        scan_segmentation(tmp_path)
