"""DICOM files and series folders read with pydicom: geometry checked on headers, values in real units.

A `.dcm` file is one 2-D slice, rows x columns as displayed. A folder of `.dcm` files is one series, one
volume: its slices are sorted by their position along the slice normal (ImagePositionPatient projected on
the cross product of the ImageOrientationPatient cosines), never by InstanceNumber or file name, and the
folder is refused when the slices do not form one regular volume. Pixel values have the rescale slope and
intercept applied (Hounsfield units for CT); a CT slice without those tags is refused, since its stored
numbers mean nothing. MONAI's `PydicomReader` sorts a series by InstanceNumber and takes the spacing from
the z coordinate alone, so the series is assembled here; the volume's affine (RAS, as NIfTI's) is returned
beside it for the caller to orient.

`series_problem` is the rule, a pure function of the slices' headers; `read_series_headers` and the
readers are the I/O around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tclearn.errors import DataError

DICOM_SUFFIX = ".dcm"
# Positions and cosines are written as decimal strings of at most 16 characters: compare with tolerance.
_COSINE_TOLERANCE = 1e-4
_SPACING_TOLERANCE = 0.01  # relative: a step 1 % off the series' own step is a gap or an uneven series
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class SliceHeader:
    """What placing one slice in its volume needs, read without its pixels."""

    path: Path
    series_uid: str
    rows: int
    columns: int
    frames: int
    samples: int  # values per pixel: 1 grey, 3 colour
    position: tuple[float, ...] | None  # x, y, z of the first pixel (mm, LPS)
    orientation: tuple[float, ...] | None  # the row and column direction cosines
    spacing: tuple[float, ...]  # between rows, between columns (mm)
    modality: str
    has_rescale: bool


def series_files(folder: Path) -> list[Path]:
    """The `.dcm` files directly in a series folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DICOM_SUFFIX))


def read_header(path: Path) -> SliceHeader:
    """One file's header (`stop_before_pixels`); a `DataError` naming the file when it is not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return SliceHeader(
            path=path,
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            samples=int(ds.get("SamplesPerPixel", 1) or 1),
            position=_floats(ds, "ImagePositionPatient", 3),
            orientation=_floats(ds, "ImageOrientationPatient", 6),
            spacing=_floats(ds, "PixelSpacing", 2) or (1.0, 1.0),
            modality=str(ds.get("Modality", "")),
            has_rescale="RescaleSlope" in ds and "RescaleIntercept" in ds,
        )
    except Exception as exc:
        raise DataError(f"cannot read DICOM file {str(path)!r}: {exc}", path=str(path)) from None


def _floats(ds: Any, tag: str, count: int) -> tuple[float, ...] | None:
    value = ds.get(tag)
    if value is None:
        return None
    numbers = tuple(float(v) for v in value)
    if len(numbers) != count or not np.isfinite(numbers).all():
        raise DataError(f"{tag} should hold {count} finite numbers, not {list(value)}")
    return numbers


def file_problem(header: SliceHeader) -> str | None:
    """Why one slice cannot be read on its own, or None."""
    if header.modality.upper() == "CT" and not header.has_rescale:
        return (
            f"DICOM CT {str(header.path)!r} has no RescaleSlope/RescaleIntercept: "
            "its stored values cannot be turned into Hounsfield units"
        )
    if header.frames > 1:
        return (
            f"DICOM file {str(header.path)!r} holds {header.frames} frames; multi-frame files are not "
            "supported: export the volume as a folder of single-frame slices (one series)"
        )
    return None


def _normal(orientation: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))


def series_problem(folder: Path, headers: Sequence[SliceHeader]) -> str | None:
    """Why these slices are not one regular volume, or None. Pure: headers in, a message out."""
    if not headers:
        return f"DICOM series folder {str(folder)!r} holds no {DICOM_SUFFIX} files"
    for header in headers:
        if (problem := file_problem(header)) is not None:
            return problem
    first = headers[0]
    for header in headers[1:]:
        if header.series_uid != first.series_uid:
            return (
                f"DICOM series folder {str(folder)!r} mixes series: {header.path.name} is series "
                f"{header.series_uid!r}, {first.path.name} is {first.series_uid!r}; one folder per series"
            )
        if (header.rows, header.columns) != (first.rows, first.columns):
            return (
                f"DICOM series folder {str(folder)!r} has slices of different shapes: {header.path.name} is "
                f"{header.rows}x{header.columns}, {first.path.name} is {first.rows}x{first.columns}"
            )
    for header in headers:
        if header.position is None or header.orientation is None:
            return (
                f"DICOM slice {str(header.path)!r} in series folder {str(folder)!r} has no "
                "ImagePositionPatient/ImageOrientationPatient: its place in the volume is unknown"
            )
    for header in headers:
        if header.samples != 1:
            return (
                f"DICOM slice {str(header.path)!r} in series folder {str(folder)!r} has {header.samples} values "
                "per pixel; a series volume is grey (one value per pixel)"
            )
    orientation = np.asarray(first.orientation)
    for header in headers[1:]:
        if not np.allclose(np.asarray(header.orientation), orientation, atol=_COSINE_TOLERANCE):
            return (
                f"DICOM series folder {str(folder)!r} mixes orientations: {header.path.name} has "
                f"{list(header.orientation or ())}, {first.path.name} has {list(first.orientation or ())}"
            )
    if len(headers) < 2:
        return None
    ordered = sorted(headers, key=lambda h: _depth(h, orientation))
    depths = np.array([_depth(h, orientation) for h in ordered])
    steps = np.diff(depths)
    step = float(steps.min())
    if step <= _COSINE_TOLERANCE:
        twin = int(np.argmin(steps))
        return (
            f"DICOM series folder {str(folder)!r} has two slices at one position ({depths[twin]:g} mm along "
            f"the normal): {ordered[twin].path.name} and {ordered[twin + 1].path.name}"
        )
    for index, gap in enumerate(steps):
        if abs(gap - step) > _SPACING_TOLERANCE * step:
            missing = round(gap / step) - 1
            regular = abs(gap - (missing + 1) * step) <= _SPACING_TOLERANCE * step
            what = f"{missing} missing slice(s)" if regular else "uneven slice spacing"
            return (
                f"DICOM series folder {str(folder)!r} has {what}: {gap:g} mm between "
                f"{ordered[index].path.name} and {ordered[index + 1].path.name} where the slices are "
                f"{step:g} mm apart"
            )
    return None


def _depth(header: SliceHeader, orientation: np.ndarray) -> float:
    return float(np.dot(np.asarray(header.position), _normal(orientation)))


def read_series_headers(folder: Path) -> list[SliceHeader]:
    """The checked headers of a series folder, sorted along the slice normal; a `DataError` if irregular."""
    headers = [read_header(path) for path in series_files(folder)]
    if (problem := series_problem(folder, headers)) is not None:
        raise DataError(problem, path=str(folder))
    orientation = np.asarray(headers[0].orientation)  # present on every slice once the series is sound
    return sorted(headers, key=lambda h: _depth(h, orientation))


def series_affine(headers: Sequence[SliceHeader]) -> np.ndarray:
    """The RAS affine of a volume indexed `[row, column, slice]` from its sorted slices' headers."""
    first = headers[0]
    assert first.position is not None and first.orientation is not None
    along_row = np.asarray(first.orientation[:3])  # direction of increasing column index
    along_column = np.asarray(first.orientation[3:])  # direction of increasing row index
    if len(headers) > 1:
        last = headers[-1].position
        assert last is not None
        slice_step = (np.asarray(last) - np.asarray(first.position)) / (len(headers) - 1)
    else:
        slice_step = _normal(first.orientation)
    affine = np.eye(4)
    affine[:3, 0] = along_column * first.spacing[0]
    affine[:3, 1] = along_row * first.spacing[1]
    affine[:3, 2] = slice_step
    affine[:3, 3] = first.position
    return _LPS_TO_RAS @ affine


def _pixels(path: Path) -> np.ndarray:
    """One slice's pixels with the rescale (modality LUT) applied, as float32 `(samples, rows, columns)`."""
    import pydicom
    from pydicom.pixels import apply_rescale

    try:
        ds = pydicom.dcmread(str(path))
        values = apply_rescale(ds.pixel_array, ds)
    except Exception as exc:
        raise DataError(f"cannot read DICOM pixels of {str(path)!r}: {exc}", path=str(path)) from None
    pixels = np.asarray(values, dtype=np.float32)
    return pixels[np.newaxis] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)  # colour: samples last


def read_slice(path: Path) -> np.ndarray:
    """A single `.dcm` file as float32 `(samples, rows, columns)` in its real units (1 sample if grey)."""
    header = read_header(path)
    if (problem := file_problem(header)) is not None:
        raise DataError(problem, path=str(path))
    return _pixels(path)


def read_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A series folder as float32 `(1, rows, columns, slices)` in real units and its RAS affine."""
    headers = read_series_headers(folder)
    volume = np.empty((1, headers[0].rows, headers[0].columns, len(headers)), np.float32)
    for index, header in enumerate(headers):
        pixels = _pixels(header.path)
        if pixels.shape != volume.shape[:3]:
            raise DataError(
                f"DICOM slice {str(header.path)!r} has {pixels.shape} pixels but its header says "
                f"{header.rows}x{header.columns}",
                path=str(header.path),
            )
        volume[:, :, :, index] = pixels
    return volume, series_affine(headers)
