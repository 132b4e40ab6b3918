"""A volume written as a DICOM series in a JPEG 2000 transfer syntax, placed so that it reads back as it was.

The series is the volume's voxel grid as DICOM describes it: slice k holds `volume[:, :, k]` (rows along the
first voxel axis, columns along the second), at ImagePositionPatient `origin + k * step`, with
ImageOrientationPatient and PixelSpacing from the affine's first two columns (RAS turned to DICOM's LPS). So
`dicom.series_affine` of the written slices is the volume's affine, and `data.read_image` of the folder gives
the same RAS array as the NIfTI it came from. Stored integers keep their values; the NIfTI scaling becomes
RescaleSlope/RescaleIntercept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tclearn.errors import DataError
from tclearn.learning.coding import CODED_DTYPES, check_ratio

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ds(values: np.ndarray) -> list[str]:
    """Decimal strings of at most 16 characters, as DICOM's DS holds them."""
    return [f"{float(v):.10g}" for v in values]


def geometry(affine: np.ndarray) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """(ImageOrientationPatient, PixelSpacing, first position, slice step) in LPS mm for a RAS `affine`."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    down, across = lps[:3, 0], lps[:3, 1]  # along a column (row index), along a row (column index)
    spacing = [float(np.linalg.norm(down)), float(np.linalg.norm(across))]
    if min(spacing) <= 0:
        raise DataError(f"a volume's affine has a zero voxel size: {affine.tolist()}")
    orientation = [*(across / spacing[1]), *(down / spacing[0])]
    return orientation, spacing, lps[:3, 3], lps[:3, 2]


def code_dataset(ds: Any, ratio: float, pixels: np.ndarray | None = None) -> None:
    """`ds` (its pixels, or `pixels`) in place in JPEG 2000 at `ratio`, relative to BitsAllocated; lossy declared."""
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    if ratio == 1:
        ds.compress(JPEG2000Lossless, pixels)
        return
    # openjpeg's ratio is relative to BitsStored: scale it so the achieved one is relative to the container
    ds.compress(JPEG2000, pixels, j2k_cr=[ratio * int(ds.BitsStored) / int(ds.BitsAllocated)])
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{ratio:.10g}"
    ds.LossyImageCompressionMethod = "ISO_15444_1"


def write_series(
    folder: Path,
    volume: np.ndarray,
    affine: np.ndarray,
    ratio: float = 1.0,
    *,
    rescale: tuple[float, float] = (1.0, 0.0),
    modality: str = "CT",
) -> list[Path]:
    """`volume` `(X, Y, Z)` of stored integers as `folder/slice0000.dcm` ... in JPEG 2000 at `ratio` (1: lossless)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ratio = check_ratio(ratio)
    if volume.ndim != 3 or volume.dtype not in CODED_DTYPES:
        raise DataError(
            f"a DICOM series is written from a 3-D uint8/uint16/int16 volume, not {volume.dtype} {volume.shape}"
        )
    orientation, spacing, origin, step = geometry(affine)
    storage = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=False)
    paths = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = storage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = modality, "anonymous"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(origin + k * step)
        ds.ImageOrientationPatient = _ds(np.asarray(orientation))
        ds.PixelSpacing = _ds(np.asarray(spacing))
        ds.SliceThickness = f"{float(np.linalg.norm(step)):.10g}"
        ds.RescaleSlope, ds.RescaleIntercept = (f"{v:.10g}" for v in rescale)
        ds.Rows, ds.Columns = volume.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = volume.dtype.itemsize * 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = int(volume.dtype.kind == "i")
        pixels = np.ascontiguousarray(volume[:, :, k])
        code_dataset(ds, ratio, pixels)
        path = folder / f"slice{k:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths
