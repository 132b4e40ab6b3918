"""A minimal DICOM writer for tests (pydicom): single slices and series folders with real geometry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows run left->right (+x in LPS), columns anterior->posterior


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    modality: str = "OT",
    rescale: tuple[float, float] | None = None,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] | None = None,
    spacing: tuple[float, float] = (1.0, 1.0),
    series_uid: str | None = None,
    instance: int = 1,
) -> None:
    """One single-frame slice. `rescale` is (slope, intercept); signed pixels are stored as int16."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "synthetic"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    signed = np.issubdtype(pixels.dtype, np.signedinteger)
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (f"{v:g}" for v in rescale)
    if position is not None:
        ds.ImagePositionPatient = [f"{v:g}" for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
    ds.PixelSpacing = [f"{v:g}" for v in spacing]
    ds.save_as(str(path), enforce_file_format=True)


def write_series(
    folder: Path,
    stored: np.ndarray,
    *,
    modality: str = "CT",
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    orientation: Sequence[float] = AXIAL,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: tuple[float, float] = (1.0, 1.0),
    step: float = 2.0,
    series_uid: str | None = None,
) -> list[Path]:
    """`stored` `(slices, rows, columns)` as one series: slice k sits `k * step` mm along the normal.

    Files are named and numbered out of order (odd slices first: for 4 slices, slice k is
    `slice{2,0,3,1}[k] + 1`), so a reader that sorts by name or by InstanceNumber instead of by position
    scrambles the volume.
    """
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    paths = []
    ranks = [*range(1, len(stored), 2), *range(0, len(stored), 2)]
    for k, pixels in enumerate(stored):
        path = folder / f"slice{ranks.index(k) + 1:03d}.dcm"
        position = np.asarray(origin) + k * step * normal
        write_dicom(
            path,
            pixels,
            modality=modality,
            rescale=rescale,
            position=position.tolist(),
            orientation=orientation,
            spacing=spacing,
            series_uid=uid,
            instance=ranks.index(k) + 1,
        )
        paths.append(path)
    return paths


def series_affine_ras(
    orientation: Sequence[float] = AXIAL,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: tuple[float, float] = (1.0, 1.0),
    step: float = 2.0,
) -> np.ndarray:
    """The RAS affine of `stored.transpose(1, 2, 0)` (rows, columns, slices), written out independently."""
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    lps = np.eye(4)
    lps[:3, 0] = col_dir * spacing[0]
    lps[:3, 1] = row_dir * spacing[1]
    lps[:3, 2] = np.cross(row_dir, col_dir) * step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
