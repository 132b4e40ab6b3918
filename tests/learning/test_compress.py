"""`tclearn data compress` and the DICOM series writer: layouts kept, images coded, masks untouched, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tclearn.cli.data import app as data_app
from tclearn.errors import ConfigError, NotFoundError
from tclearn.learning.coding import declared, encode
from tclearn.learning.compress import compress
from tclearn.learning.data import load_classification, load_segmentation, read_image
from tclearn.learning.dicom_write import write_series
from tests.learning.dicom import write_series as write_dicom_series
from tests.learning.test_coding import as_dtype, ct_slice

runner = CliRunner()
OBLIQUE_ISH = np.array([[0.0, -0.9, 0.0, 12.0], [0.0, 0.0, 2.5, -7.0], [-0.8, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


def hu_volume(depth: int = 4) -> np.ndarray:
    return np.stack([ct_slice(40, s)[:, :36] for s in range(depth)], axis=-1)


@pytest.mark.parametrize("affine", [np.diag([0.8, 0.9, 2.5, 1.0]), OBLIQUE_ISH])
def test_nifti_to_dicom_series_round_trip_is_identical(tmp_path: Path, affine: np.ndarray) -> None:
    volume = hu_volume()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "v.nii.gz")
    write_series(tmp_path / "v", volume, affine)
    expected, got = read_image(tmp_path / "v.nii.gz"), read_image(tmp_path / "v")
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_rescale_tags_carry_the_nifti_scaling(tmp_path: Path) -> None:
    stored = (hu_volume() + 1024).astype(np.uint16)
    image = nib.Nifti1Image(stored, np.diag([1.0, 1.0, 2.0, 1.0]))
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "v.nii.gz")
    compress(tmp_path, tmp_path.parent / "out", 1.0)
    np.testing.assert_array_equal(read_image(tmp_path.parent / "out" / "v"), read_image(tmp_path / "v.nii.gz"))


def segmentation_folder(root: Path, dtype: type = np.uint8) -> Path:
    for index in range(2):
        picture = as_dtype(ct_slice(64, index), dtype)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(root / "images" / f"case{index}.png")
        Image.fromarray(((picture > picture.mean()) * 255).astype(np.uint8)).save(root / "masks" / f"case{index}.png")
    (root / "notes.csv").write_text("case,site\ncase0,a\n")
    return root


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lossless_segmentation_copy_reads_the_same(tmp_path: Path, dtype: type) -> None:
    source = segmentation_folder(tmp_path / "src", dtype)
    report = compress(source, tmp_path / "out", 1.0)
    assert report["images"] == 2 and report["coded_files"] == 2 and report["copied_files"] == 3
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["case0.jp2", "case1.jp2"]
    for mask in (source / "masks").iterdir():
        assert (tmp_path / "out" / "masks" / mask.name).read_bytes() == mask.read_bytes()
    before, after = load_segmentation(source), load_segmentation(tmp_path / "out")
    assert after.names == ("case0.jp2", "case1.jp2")
    assert np.array_equal(before.images.numpy(), after.images.numpy())
    assert np.array_equal(before.targets.numpy(), after.targets.numpy())
    assert declared(tmp_path / "out") is not None and declared(tmp_path / "out").lossy == 0  # type: ignore[union-attr]


def test_lossy_classification_and_dicom_series(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for label in ("a", "b"):
        (source / "classes" / label).mkdir(parents=True)
        Image.fromarray(as_dtype(ct_slice(128, ord(label)), np.uint16)).save(source / "classes" / label / "x.png")
    write_dicom_series(source / "ct" / "series", np.stack([ct_slice(64, s) + 1024 for s in range(3)]).astype(np.uint16))
    report = compress(source, tmp_path / "out", 10.0)
    assert report["images"] == 3 and report["coded_files"] == 5
    assert report["max_ratio"] is not None and report["max_ratio"] == pytest.approx(10.0, rel=0.25)
    found = declared(tmp_path / "out")
    assert found is not None and (found.coded, found.lossy) == (5, 5)
    data = load_classification(tmp_path / "out" / "classes")
    assert data.classes == ("a", "b") and data.names == ("a/x.jp2", "b/x.jp2")
    series, original = read_image(tmp_path / "out" / "ct" / "series"), read_image(source / "ct" / "series")
    assert series.shape == original.shape and 0 < float(np.abs(series - original).mean()) < 20


def test_cli_prints_json_and_refuses_an_existing_folder(tmp_path: Path) -> None:
    source = segmentation_folder(tmp_path / "src")
    result = runner.invoke(data_app, ["compress", str(source), "--out", str(tmp_path / "out"), "--ratio", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["coded_files"] == 2
    again = runner.invoke(data_app, ["compress", str(source), "--out", str(tmp_path / "out")])
    assert again.exit_code == 1 and "already exists" in again.output


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != "src")


@pytest.mark.parametrize(
    ("spoil", "ratio", "message"),
    [
        (None, 0.5, "ratio must be a number >= 1"),
        ("corrupt", 1.0, "corrupt or truncated JPEG 2000 image"),
        ("palette", 1.0, "PIL mode 'P'"),
        ("empty", 1.0, "holds no image to code"),
    ],
)
def test_failures_leave_nothing(tmp_path: Path, spoil: str | None, ratio: float, message: str) -> None:
    source = segmentation_folder(tmp_path / "src")
    if spoil == "corrupt":
        (source / "images" / "zz.jp2").write_bytes(encode(ct_slice(), jp2=True)[:150])
    elif spoil == "palette":
        Image.fromarray(ct_slice().astype(np.uint8)).convert("P").save(source / "images" / "zz.png")
    elif spoil == "empty":
        for picture in (source / "images").iterdir():
            picture.unlink()
    result = runner.invoke(data_app, ["compress", str(source), "--out", str(tmp_path / "out"), "--ratio", str(ratio)])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
    assert leftovers(tmp_path) == []


def test_missing_source_and_output_inside_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        compress(tmp_path / "nowhere", tmp_path / "out", 1.0)
    source = segmentation_folder(tmp_path / "src")
    with pytest.raises(ConfigError, match="inside the data folder"):
        compress(source, source / "coded", 1.0)
