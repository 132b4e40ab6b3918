"""JPEG 2000 on real scans, not our generator: pydicom's bundled test files (a real MR slice stored plain and in the
JPEG 2000 lossless syntax by another toolkit, a real CT slice in HU, a lossy JPEG 2000 NM image)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tclearn.learning.coding import coded_ratio, declared, round_trip
from tclearn.learning.compress import compress
from tclearn.learning.data import read_image


def real(name: str) -> Path:
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = get_testdata_file(name)
    if found is None:
        pytest.fail(f"pydicom's bundled test file {name} is missing")
    return Path(str(found))


def test_a_lossless_jpeg_2000_slice_written_elsewhere_reads_as_its_plain_twin(tmp_path: Path) -> None:
    plain, coded = read_image(real("MR_small.dcm")), read_image(real("MR_small_jp2klossless.dcm"))
    assert plain.shape == coded.shape == (1, 64, 64)
    np.testing.assert_array_equal(plain, coded)
    shutil.copy(real("MR_small_jp2klossless.dcm"), tmp_path / "mr.dcm")
    shutil.copy(real("MR_small.dcm"), tmp_path / "plain.dcm")
    found = declared(tmp_path)
    assert found is not None and (found.coded, found.lossy) == (1, 0)


def test_a_lossy_jpeg_2000_image_from_elsewhere_reads_and_declares_lossy(tmp_path: Path) -> None:
    image = read_image(real("JPEG2000.dcm"))
    assert image.shape == (1, 1024, 256) and np.isfinite(image).all() and image.std() > 0
    shutil.copy(real("JPEG2000.dcm"), tmp_path / "nm.dcm")
    found = declared(tmp_path)
    assert found is not None and (found.coded, found.lossy) == (1, 1) and found.max_ratio > 1


@pytest.mark.parametrize("ratio", [1.0, 10.0])
def test_a_real_ct_slice_compressed_keeps_its_hounsfield_units(tmp_path: Path, ratio: float) -> None:
    source = tmp_path / "src" / "images"
    source.mkdir(parents=True)
    shutil.copy(real("CT_small.dcm"), source / "ct.dcm")
    compress(tmp_path / "src", tmp_path / "out", ratio)
    before, after = read_image(source / "ct.dcm"), read_image(tmp_path / "out" / "images" / "ct.dcm")
    assert before.shape == after.shape
    error = np.abs(after - before)
    if ratio == 1.0:
        assert error.max() == 0
    else:  # lossy, yet in HU: the mean error a few HU against a range of hundreds
        assert 0 < error.mean() < 0.02 * float(before.max() - before.min())
        assert coded_ratio(tmp_path / "out" / "images" / "ct.dcm") > 3  # its header counts too
    assert round_trip(before, ratio).shape == before.shape
