"""JPEG 2000 coding: encode/decode tables, round trips, declared compression, and reading coded files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tclearn.errors import ConfigError, DataError
from tclearn.learning.coding import (
    Compression,
    coded_ratio,
    declared,
    decode,
    encode,
    is_lossy_codestream,
    round_trip,
)
from tclearn.learning.data import read_image
from tclearn.learning.scan import image_shape
from tests.learning.dicom import write_dicom, write_series


def ct_slice(side: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth HU picture (body, a bright disc, mild noise): what coding meets in practice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] / side
    body = np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16, 40.0, -1000.0)
    disc = np.where((yy - 0.4) ** 2 + (xx - 0.6) ** 2 < 0.01, 200.0, 0.0)
    return np.round(body + disc + rng.normal(0, 5, (side, side))).astype(np.int16)


def as_dtype(picture: np.ndarray, dtype: type) -> np.ndarray:
    if dtype is np.int16:
        return picture
    info = np.iinfo(dtype)
    scaled = (picture.astype(np.float64) + 1024) / 4096 * info.max
    return np.clip(scaled, 0, info.max).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("jp2", [False, True])
def test_lossless_round_trip_is_exact(dtype: type, jp2: bool) -> None:
    picture = as_dtype(ct_slice(), dtype)
    data = encode(picture, 1.0, jp2=jp2)
    out = decode(data, "x")
    assert out.dtype == picture.dtype
    np.testing.assert_array_equal(out, picture)
    assert data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" if jp2 else data[:2] == b"\xff\x4f"
    assert not is_lossy_codestream(data[:4096])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("ratio", [4.0, 10.0, 20.0])
def test_lossy_ratio_is_achieved(dtype: type, ratio: float) -> None:
    """On a textured picture (whose lossless ratio is below every target) the coder meets the target."""
    info = np.iinfo(dtype)
    picture = np.random.default_rng(3).integers(info.min // 4, info.max // 4, (256, 256)).astype(dtype)
    data = encode(picture, ratio)
    achieved = picture.nbytes / len(data)
    assert achieved == pytest.approx(ratio, rel=0.15)
    assert is_lossy_codestream(data[:4096])
    assert decode(data, "x").shape == picture.shape


@pytest.mark.parametrize("ratio", [0.5, 0.0, -3.0, float("nan"), float("inf")])
def test_bad_ratio_is_refused_by_name(ratio: float) -> None:
    with pytest.raises(ConfigError, match="ratio must be a number >= 1"):
        encode(ct_slice(), ratio)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((64, 64), np.float32), "not float32"),
        (np.zeros((16, 64), np.uint8), "at least 32x32"),
        (np.zeros((64, 64, 2), np.uint8), "at least 32x32"),
    ],
)
def test_uncodable_arrays_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        encode(array)


@pytest.mark.parametrize("cut", [40, 300, None])
def test_corrupt_codestream_names_the_file(cut: int | None) -> None:
    data = encode(ct_slice())
    broken = data[:cut] if cut else b"not a codestream at all"
    with pytest.raises(DataError, match=r"scan-7\.j2k"):
        decode(broken, "scan-7.j2k")


def test_round_trip_keeps_hu_when_lossless_and_degrades_gracefully() -> None:
    image = np.stack([ct_slice(128, s) for s in range(2)], axis=-1)[np.newaxis].astype(np.float32)  # (1, 128, 128, 2)
    np.testing.assert_array_equal(round_trip(image, 1.0), image)
    errors = [float(np.abs(round_trip(image, r) - image).mean()) for r in (4.0, 64.0)]
    assert 0 < errors[0] < errors[1] < 100


def test_round_trip_scales_float_pictures_by_their_range() -> None:
    picture = (ct_slice().astype(np.float32) + 1024) / 4096  # display values in [0, 1], not integral
    out = round_trip(picture[np.newaxis], 1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], picture, atol=1.0 / 65535)


def test_declared_counts_coded_images_and_the_highest_ratio(tmp_path: Path) -> None:
    assert declared(tmp_path) is None
    (tmp_path / "a").mkdir()
    Image.fromarray(as_dtype(ct_slice(), np.uint8)).save(tmp_path / "a" / "plain.png")
    assert declared(tmp_path) is None
    (tmp_path / "a" / "lossless.jp2").write_bytes(encode(as_dtype(ct_slice(), np.uint8), jp2=True))
    (tmp_path / "a" / "lossy.j2k").write_bytes(encode(ct_slice(128), 20.0))
    found = declared(tmp_path)
    assert found is not None
    assert (found.coded, found.lossy) == (2, 1)
    assert found.max_ratio == pytest.approx(coded_ratio(tmp_path / "a" / "lossy.j2k"), rel=1e-3)
    assert found.max_ratio == pytest.approx(20.0, rel=0.15)


def test_declared_reads_dicom_transfer_syntaxes(tmp_path: Path) -> None:
    import pydicom
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    for name, syntax, extra in (("lossless", JPEG2000Lossless, {}), ("lossy", JPEG2000, {"j2k_cr": [10]})):
        path = tmp_path / f"{name}.dcm"
        write_dicom(path, ct_slice(128), modality="CT", rescale=(1.0, 0.0))
        ds = pydicom.dcmread(path)
        ds.compress(syntax, **extra)
        ds.save_as(path)
    write_dicom(tmp_path / "plain.dcm", ct_slice(), modality="CT", rescale=(1.0, 0.0))
    assert declared(tmp_path) == Compression(coded=2, lossy=1, max_ratio=pytest.approx(9.0, rel=0.2))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_and_its_jp2_read_the_same(tmp_path: Path, dtype: type) -> None:
    picture = as_dtype(ct_slice(), dtype)
    Image.fromarray(picture).save(tmp_path / "scan.png")
    (tmp_path / "scan.jp2").write_bytes(encode(picture, jp2=True))
    png, jp2 = read_image(tmp_path / "scan.png"), read_image(tmp_path / "scan.jp2")
    assert png.shape == jp2.shape == (1, 64, 64)
    np.testing.assert_array_equal(png, jp2)
    assert image_shape(tmp_path / "scan.jp2") == (1, 64, 64)


def test_signed_codestream_reads_in_real_units(tmp_path: Path) -> None:
    (tmp_path / "ct.j2k").write_bytes(encode(ct_slice()))
    np.testing.assert_array_equal(read_image(tmp_path / "ct.j2k")[0], ct_slice().astype(np.float32))


def test_corrupt_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.jp2").write_bytes(encode(ct_slice(), jp2=True)[:200])
    with pytest.raises(DataError, match=r"bad\.jp2"):
        read_image(tmp_path / "bad.jp2")
    with pytest.raises(DataError, match=r"bad\.jp2"):
        image_shape(tmp_path / "bad.jp2")


@pytest.mark.parametrize("lossless", [True, False])
def test_dicom_j2k_slice_and_series_read(tmp_path: Path, lossless: bool) -> None:
    import pydicom
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    stored = np.stack([ct_slice(64, s) + 1024 for s in range(3)]).astype(np.uint16)
    plain = write_series(tmp_path / "plain", stored)
    coded = write_series(tmp_path / "coded", stored)
    for path in coded:
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless) if lossless else ds.compress(JPEG2000, j2k_cr=[5])
        ds.save_as(path)
    volume, reference = read_image(tmp_path / "coded"), read_image(tmp_path / "plain")
    single, single_ref = read_image(coded[0]), read_image(plain[0])
    assert volume.shape == reference.shape == (1, 64, 64, 3)
    if lossless:
        np.testing.assert_array_equal(volume, reference)
        np.testing.assert_array_equal(single, single_ref)
    else:
        assert 0 < float(np.abs(volume - reference).mean()) < 20


@pytest.mark.parametrize(
    ("values", "dtype", "offset", "scale"),
    [
        ([-1024.0, 0.0, 3071.0], np.int16, 0.0, 1.0),  # HU: kept as they are
        ([0.0, 0.5, 1.0], np.uint16, 0.0, 1.0 / 65535),  # display values: over their range
        ([40000.0, 40001.0, 40002.0], np.uint16, 40000.0, 2.0 / 65535),  # integral but beyond int16
        ([7.0, 7.0, 7.0], np.int16, 0.0, 1.0),  # constant
    ],
)
def test_quantise_table(values: list[float], dtype: type, offset: float, scale: float) -> None:
    from tclearn.learning.coding import quantise

    image = np.array(values, np.float32)
    stored, got_offset, got_scale = quantise(image)
    assert stored.dtype == dtype
    assert (got_offset, got_scale) == pytest.approx((offset, scale))
    np.testing.assert_allclose(stored * got_scale + got_offset, image, atol=got_scale / 2 + 1e-9)  # half a step
