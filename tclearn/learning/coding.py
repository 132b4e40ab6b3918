"""JPEG 2000 coding of images (pylibjpeg-openjpeg): encode, decode, round trips and what a folder declares.

A ratio is the raw bytes of an array (its container: 1 byte for uint8, 2 for uint16/int16) over its coded
bytes: 1 is lossless (reversible 5-3 wavelet), R > 1 lossy at that ratio (irreversible 9-7 wavelet). Every
codestream has 6 wavelet resolutions (multi-resolution: a viewer can open a coarse level first), so a coded
plane is at least 32 x 32 pixels. `round_trip` is what compression does to a float image as training and
evaluation see it; `declared` is what a training folder's images say about their own coding, from headers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tclearn.errors import ConfigError, DataError

J2K_SUFFIXES = (".jp2", ".j2k", ".j2c")
J2K_LOSSLESS_UID = "1.2.840.10008.1.2.4.90"
J2K_LOSSY_UID = "1.2.840.10008.1.2.4.91"
CODED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))
MIN_SIDE = 32  # 6 resolutions halve a side 5 times
_COD = b"\xff\x52"  # the coding-style marker; its 14th byte names the wavelet (0: 9-7 irreversible)
_HEADER_BYTES = 4096


def check_ratio(ratio: float) -> float:
    """`ratio` as a float when it is a number >= 1; a `ConfigError` naming it otherwise."""
    value = float(ratio)
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"compression ratio must be a number >= 1 (1 = lossless), got {ratio!r}")
    return value


def encode(array: np.ndarray, ratio: float = 1.0, *, jp2: bool = False) -> bytes:
    """A 2-D (or rows x columns x 3 colour) uint8/uint16/int16 array as a J2K codestream (JP2 file with `jp2`)."""
    from openjpeg.utils import encode_array

    ratio = check_ratio(ratio)
    if array.dtype not in CODED_DTYPES:
        raise DataError(f"JPEG 2000 codes uint8, uint16 or int16 pixels, not {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or min(array.shape[:2]) < MIN_SIDE:
        raise DataError(
            f"JPEG 2000 codes planes of at least {MIN_SIDE}x{MIN_SIDE} pixels (grey, or RGB last), "
            f"not an array of shape {array.shape}"
        )
    return encode_array(
        np.ascontiguousarray(array),
        bits_stored=array.dtype.itemsize * 8,  # the container's depth: the ratio is relative to it
        photometric_interpretation=1 if array.ndim == 3 else 2 if jp2 else 0,
        compression_ratios=None if ratio == 1 else [ratio],
        codec_format=1 if jp2 else 0,
    )


def decode(data: bytes, name: str) -> np.ndarray:
    """The pixels of a J2K codestream or JP2 file; a `DataError` naming `name` when it is corrupt or cut."""
    from openjpeg.utils import decode as decode_stream

    try:
        return np.asarray(decode_stream(data))
    except Exception as exc:
        raise DataError(f"corrupt or truncated JPEG 2000 image {name!r}: {exc}", path=name) from None


def quantise(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """`image` as integers to code and the `(offset, scale)` that turn them back: `value = stored * scale + offset`.

    Integral values within int16 (Hounsfield units) are kept as int16; anything else is scaled to uint16 over
    the image's own range.
    """
    info = np.iinfo(np.int16)
    if image.size and np.all(np.round(image) == image) and image.min() >= info.min and image.max() <= info.max:
        return image.astype(np.int16), 0.0, 1.0
    low, high = float(image.min()), float(image.max())
    scale = (high - low) / 65535.0 if high > low else 1.0
    return np.round((image - low) / scale).astype(np.uint16), low, scale


def _planes(shape: tuple[int, ...]) -> Iterator[tuple[int | slice, ...]]:
    """Index of every 2-D plane of a `(C, *spatial)` array: per channel, and per slice along the last axis in 3-D."""
    for c in range(shape[0]):
        for rest in np.ndindex(*shape[3:]):
            yield (c, slice(None), slice(None), *rest)


def coded_round_trip(image: np.ndarray, ratio: float) -> tuple[np.ndarray, int, int]:
    """`round_trip`'s image with the raw and the coded bytes of its planes (their quotient: the achieved ratio)."""
    ratio = check_ratio(ratio)
    stored, offset, scale = quantise(np.asarray(image, dtype=np.float32))
    out = np.empty(stored.shape, np.float32)
    coded = 0
    for index in _planes(stored.shape):
        data = encode(stored[index], ratio)
        coded += len(data)
        out[index] = decode(data, "round trip")
    restored = out * np.float32(scale) + np.float32(offset) if (scale, offset) != (1.0, 0.0) else out
    return restored, stored.nbytes, coded


def round_trip(image: np.ndarray, ratio: float) -> np.ndarray:
    """A float `(C, *spatial)` image as it reads after JPEG 2000 coding at `ratio`, every 2-D plane coded alone."""
    return coded_round_trip(image, ratio)[0]


def is_j2k_file(path: Path) -> bool:
    return path.name.lower().endswith(J2K_SUFFIXES)


def _container_bytes(precision: int) -> int:
    return 1 if precision <= 8 else 2


def coded_ratio(path: Path) -> float:
    """Raw bytes (rows x columns x components x container) over file bytes, from the headers only.

    A DICOM file's header counts in its bytes: its ratio is a little under its pixel data's.
    """
    if is_j2k_file(path):
        from openjpeg.utils import get_parameters

        try:
            p = get_parameters(str(path))
        except Exception as exc:
            raise DataError(f"corrupt or truncated JPEG 2000 image {str(path)!r}: {exc}", path=str(path)) from None
        raw = int(p["rows"]) * int(p["columns"]) * int(p["samples_per_pixel"]) * _container_bytes(int(p["precision"]))
    else:
        ds = _dicom_header(path)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        raw = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated) // 8
    return raw / path.stat().st_size


def is_lossy_codestream(head: bytes) -> bool:
    """Whether a codestream's first bytes declare the irreversible 9-7 wavelet (its COD marker segment)."""
    at = head.find(_COD)
    if at < 0 or at + 13 >= len(head):
        raise DataError("no JPEG 2000 coding-style (COD) marker in the image's first bytes")
    return head[at + 13] == 0


def _dicom_header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:
        raise DataError(f"cannot read DICOM file {str(path)!r}: {exc}", path=str(path)) from None


@dataclass(frozen=True)
class Compression:
    """What a folder's images declare: how many are JPEG 2000 coded, how many of those lossy, the highest ratio."""

    coded: int
    lossy: int
    max_ratio: float


def _coding(path: Path) -> bool | None:
    """None when `path` is not a coded image; else whether its coding is lossy."""
    if is_j2k_file(path):
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
        try:
            return is_lossy_codestream(head)
        except DataError as exc:
            raise DataError(f"{str(path)!r}: {exc.message}", path=str(path)) from None
    if not path.name.lower().endswith(".dcm"):
        return None
    ds = _dicom_header(path)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if syntax not in (J2K_LOSSLESS_UID, J2K_LOSSY_UID):
        return None
    return syntax == J2K_LOSSY_UID or str(ds.get("LossyImageCompression", "00")) == "01"


def declared(root: Path) -> Compression | None:
    """The JPEG 2000 coding of every image under `root` (J2K files, DICOM in a J2K transfer syntax), from
    headers; None when no image is coded."""
    coded = lossy = 0
    max_ratio = 0.0
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        kind = _coding(path)
        if kind is None:
            continue
        coded += 1
        lossy += int(kind)
        max_ratio = max(max_ratio, coded_ratio(path))
    return Compression(coded, lossy, round(max_ratio, 3)) if coded else None
