"""`tclearn data compress`: a copy of a data folder with every image coded in JPEG 2000, written atomically.

Any layout is copied as it stands (segmentation `images/` + `masks/`, class folders, a whole coalition):

- PNG/TIFF/JPEG/BMP pictures (grey 8- or 16-bit, or 8-bit RGB) become `.jp2` files of the same depth;
- JPEG 2000 files are coded again at the asked ratio, under their own name;
- DICOM files (slices, and the slices of series folders) keep their headers and take a JPEG 2000 transfer
  syntax (`.90` lossless, `.91` lossy);
- 3-D NIfTI volumes become DICOM series folders of the same name (`dicom_write.py`), which read back as the
  same RAS array;
- masks (anything under a `masks` folder), label tables and every other file are copied unchanged: labels are
  never coded lossily.

The copy is written into a hidden folder beside OUT and renamed to OUT at the end: on any error nothing is
left behind. OUT must not exist.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tclearn.errors import ConfigError, DataError, NotFoundError
from tclearn.learning.coding import J2K_SUFFIXES, check_ratio, coded_ratio, decode, encode
from tclearn.learning.data import DICOM_SUFFIXES, NIFTI_SUFFIXES, PIL_SUFFIXES, stem
from tclearn.learning.dicom_write import code_dataset, write_series

MASKS = "masks"
_PIL_MODES = {"L": np.uint8, "I;16": np.uint16, "RGB": np.uint8}


@dataclass
class Tally:
    """What a compression wrote: images coded, bytes in and out, each coded file's achieved ratio."""

    images: int = 0
    copied: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    ratios: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "images": self.images,
            "coded_files": len(self.ratios),
            "copied_files": self.copied,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "mean_ratio": round(float(np.mean(self.ratios)), 3) if self.ratios else None,
            "max_ratio": round(float(np.max(self.ratios)), 3) if self.ratios else None,
        }


def _picture(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            mode = picture.mode
            if mode not in _PIL_MODES:
                raise DataError(
                    f"image {str(path)!r} is PIL mode {mode!r}; JPEG 2000 coding takes grey 8- or 16-bit (L, I;16) "
                    "or 8-bit RGB pictures: convert it first",
                    path=str(path),
                )
            return np.asarray(picture).astype(_PIL_MODES[mode])
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}", path=str(path)) from None


def _volume(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A 3-D NIfTI's stored integers, affine and (slope, intercept)."""
    import nibabel as nib

    try:
        image = nib.load(path)
        if not isinstance(image, nib.spatialimages.SpatialImage):
            raise DataError(f"{str(path)!r} is not a NIfTI image", path=str(path))
        proxy: Any = image.dataobj
        raw = np.asanyarray(proxy.get_unscaled())
        slope, inter = proxy.slope, proxy.inter
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read NIfTI image {str(path)!r}: {exc}", path=str(path)) from None
    if raw.ndim != 3:
        raise DataError(f"NIfTI image {str(path)!r} has shape {raw.shape}; only 3-D volumes are coded", path=str(path))
    if raw.dtype.kind == "f" and np.all(np.round(raw) == raw) and raw.min() >= -32768 and raw.max() <= 32767:
        raw = raw.astype(np.int16)
    if raw.dtype not in (np.uint8, np.uint16, np.int16):
        raise DataError(
            f"NIfTI image {str(path)!r} stores {raw.dtype}; JPEG 2000 codes uint8, uint16 or int16 (e.g. CT in HU)",
            path=str(path),
        )
    return raw, np.asarray(image.affine, dtype=np.float64), (float(slope), float(inter))


def _dicom(source: Path, target: Path, ratio: float) -> None:
    import pydicom

    try:
        ds = pydicom.dcmread(str(source))
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        code_dataset(ds, ratio)
        ds.save_as(str(target), enforce_file_format=True)
    except Exception as exc:
        raise DataError(f"cannot code DICOM file {str(source)!r}: {exc}", path=str(source)) from None


def _code_file(source: Path, target_dir: Path, ratio: float) -> list[Path]:
    """`source` coded into `target_dir`; the files written (none when `source` is not an image)."""
    name = source.name.lower()
    if name.endswith(PIL_SUFFIXES):
        target = target_dir / f"{stem(source)}.jp2"
        target.write_bytes(encode(_picture(source), ratio, jp2=True))
        return [target]
    if name.endswith(J2K_SUFFIXES):
        target = target_dir / source.name
        pixels = decode(source.read_bytes(), str(source))
        target.write_bytes(encode(pixels, ratio, jp2=name.endswith(".jp2")))
        return [target]
    if name.endswith(DICOM_SUFFIXES):
        target = target_dir / source.name
        _dicom(source, target, ratio)
        return [target]
    if name.endswith(NIFTI_SUFFIXES):
        raw, affine, rescale = _volume(source)
        return write_series(target_dir / stem(source), raw, affine, ratio, rescale=rescale)
    return []


def _walk(source: Path, target: Path, ratio: float, tally: Tally, in_masks: bool) -> None:
    target.mkdir(exist_ok=True)
    entries = sorted(source.iterdir())
    series = not in_masks and sum(e.is_file() and e.name.lower().endswith(DICOM_SUFFIXES) for e in entries) > 1
    for entry in entries:
        if entry.is_dir():
            _walk(entry, target / entry.name, ratio, tally, in_masks or entry.name == MASKS)
            continue
        written = [] if in_masks else _code_file(entry, target, ratio)
        if not written:
            shutil.copy2(entry, target / entry.name)
            tally.copied += 1
            continue
        tally.images += 0 if series and entry.name.lower().endswith(DICOM_SUFFIXES) else 1
        tally.bytes_in += entry.stat().st_size
        for path in written:
            tally.bytes_out += path.stat().st_size
            tally.ratios.append(coded_ratio(path))
    tally.images += int(series)  # a series folder is one image


def compress(source: Path, out: Path, ratio: float) -> dict[str, object]:
    """Write `source` to `out` with every image coded at `ratio` (1: lossless); what was written, as a dict."""
    ratio = check_ratio(ratio)
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise NotFoundError(f"data folder {str(source)!r} does not exist")
    if out.exists():
        raise ConfigError(f"output folder {str(out)!r} already exists; name a new one or remove it first")
    if out.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"output folder {str(out)!r} lies inside the data folder {str(source)!r}; write it elsewhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tally = Tally()
        _walk(source, staging, ratio, tally, source.name == MASKS)
        if not tally.ratios:
            raise DataError(
                f"data folder {str(source)!r} holds no image to code (PNG/TIFF/JPEG/BMP, JPEG 2000, DICOM, NIfTI)",
                path=str(source),
            )
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"source": str(source), "out": str(out), "ratio": ratio, **tally.summary()}
