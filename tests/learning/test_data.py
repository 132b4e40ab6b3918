"""Data folders: loading, the errors a user meets, manifests and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.data import Task, load_csv, load_segmentation, read_image
from tclearn.learning.folders import load_dataset
from tclearn.learning.manifest import fingerprint
from tclearn.learning.splits import split_indices, train_test_split


def write_png(path: Path, shape: tuple[int, int] = (16, 16), value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros(shape, np.uint8)
    array[2:6, 3:9] = value
    Image.fromarray(array).save(path)


def seg_folder(root: Path, names: list[str]) -> Path:
    for name in names:
        write_png(root / "images" / f"{name}.png", value=128)
        write_png(root / "masks" / f"{name}.png")
    return root


def test_loads_segmentation_folder_as_tensors(tmp_path: Path) -> None:
    data = load_segmentation(seg_folder(tmp_path, ["a", "b", "c"]))
    assert data.task is Task.SEGMENTATION
    assert tuple(data.images.shape) == (3, 1, 16, 16)
    assert set(data.targets.unique().tolist()) == {0.0, 1.0}
    assert data.targets[0, 0, 2, 3] == 1.0  # rows x columns kept as in the picture
    assert data.images.max().item() == pytest.approx(128 / 255)


def test_missing_mask_names_the_image(tmp_path: Path) -> None:
    seg_folder(tmp_path, ["a"])
    write_png(tmp_path / "images" / "lonely.png")
    with pytest.raises(DataError, match=r"lonely\.png"):
        load_segmentation(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_segmentation(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_segmentation(tmp_path / "nope")


def test_mismatched_shapes_name_both_files(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "a.png", (16, 16))
    write_png(tmp_path / "masks" / "a.png", (16, 20))
    with pytest.raises(DataError, match=r"a\.png.*mask"):
        load_segmentation(tmp_path)


def test_images_of_different_sizes_need_a_size(tmp_path: Path) -> None:
    seg_folder(tmp_path, ["a"])
    write_png(tmp_path / "images" / "b.png", (20, 20))
    write_png(tmp_path / "masks" / "b.png", (20, 20))
    with pytest.raises(DataError, match="common size"):
        load_segmentation(tmp_path)
    assert tuple(load_segmentation(tmp_path, size=(8, 8)).images.shape) == (2, 1, 8, 8)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    seg_folder(tmp_path, ["a"])
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    write_png(tmp_path / "masks" / "broken.png")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_segmentation(tmp_path)


def test_classification_folder(tmp_path: Path) -> None:
    for label in ("healthy", "sick"):
        for k in range(2):
            write_png(tmp_path / label / f"{k}.png")
    data = load_dataset(tmp_path, Task.CLASSIFICATION)
    assert data.classes == ("healthy", "sick")
    assert data.targets.tolist() == [0, 0, 1, 1]


def test_csv_with_label_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("age,bp,label\n50,120,yes\n30,110,no\n")
    data = load_csv(path)
    assert data.classes == ("no", "yes") and data.targets.tolist() == [1, 0]
    assert tuple(data.images.shape) == (2, 2)
    with pytest.raises(DataError, match="outcome"):
        load_csv(path, "outcome")


def test_nifti_and_dicom_keep_their_real_values(tmp_path: Path) -> None:
    import nibabel as nib

    from tests.learning.dicom import write_dicom

    array = np.full((8, 8), -1000.0, np.float32)
    array[1:3, 1:4] = 40.0
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "x.nii.gz")
    assert np.array_equal(read_image(tmp_path / "x.nii.gz"), array[np.newaxis])  # not squeezed into [0, 1]
    scaled = nib.Nifti1Image(np.array([[[0, 10]]], np.int16), np.eye(4))
    scaled.header.set_slope_inter(2.0, -1024.0)
    nib.save(scaled, tmp_path / "s.nii.gz")
    assert read_image(tmp_path / "s.nii.gz").ravel().tolist() == [-1024.0, -1004.0]  # scl_slope, scl_inter

    stored = np.zeros((6, 5), np.uint16)
    stored[1, 3] = 1064  # one bright pixel: row 1, column 3 as displayed
    write_dicom(tmp_path / "ct.dcm", stored, modality="CT", rescale=(1.0, -1024.0))
    image = read_image(tmp_path / "ct.dcm")
    assert image.shape == (1, 6, 5)
    assert image[0, 1, 3] == 40.0 and image[0, 0, 0] == -1024.0  # Hounsfield units: stored + intercept

    write_dicom(tmp_path / "ct2.dcm", stored, modality="CT", rescale=(0.5, 0.0))
    assert read_image(tmp_path / "ct2.dcm")[0, 1, 3] == 532.0  # the slope applied

    write_dicom(tmp_path / "mr.dcm", stored, modality="MR")  # no rescale tags: the stored values are the values
    assert read_image(tmp_path / "mr.dcm")[0, 1, 3] == 1064.0


def test_png_is_scaled_by_its_type_range(tmp_path: Path) -> None:
    picture = np.zeros((4, 4), np.uint16)
    picture[0, 1] = 65535
    Image.fromarray(picture).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0, 0, 1] == pytest.approx(1.0)


def test_ct_without_rescale_tags_is_refused(tmp_path: Path) -> None:
    from tests.learning.dicom import write_dicom, write_series

    write_dicom(tmp_path / "bare.dcm", np.zeros((4, 4), np.uint16), modality="CT")
    with pytest.raises(DataError, match=r"bare\.dcm.*RescaleSlope"):
        read_image(tmp_path / "bare.dcm")
    write_series(tmp_path / "series", np.zeros((3, 4, 4), np.int16), rescale=None)
    with pytest.raises(DataError, match=r"series/slice\d+\.dcm.*Hounsfield"):
        read_image(tmp_path / "series")


def test_colour_slice_is_channel_first_and_multi_frame_is_refused(tmp_path: Path) -> None:
    import pydicom

    from tclearn.learning.scan import image_shape
    from tests.learning.dicom import write_dicom

    write_dicom(tmp_path / "rgb.dcm", np.zeros((4, 5), np.uint16))
    ds = pydicom.dcmread(tmp_path / "rgb.dcm")
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (10, 20, 30)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelData = 8, 8, 7, rgb.tobytes()
    ds.save_as(tmp_path / "rgb.dcm")
    image = read_image(tmp_path / "rgb.dcm")
    assert image.shape == image_shape(tmp_path / "rgb.dcm") == (3, 4, 5)
    assert image[:, 1, 2].tolist() == [10.0, 20.0, 30.0]

    write_dicom(tmp_path / "cine.dcm", np.zeros((4, 5), np.uint16))
    ds = pydicom.dcmread(tmp_path / "cine.dcm")
    ds.NumberOfFrames, ds.PixelData = 2, np.zeros((2, 4, 5), np.uint16).tobytes()
    ds.save_as(tmp_path / "cine.dcm")
    with pytest.raises(DataError, match=r"cine\.dcm' holds 2 frames"):
        read_image(tmp_path / "cine.dcm")


def test_series_is_one_volume_sorted_by_position_in_ras_axes(tmp_path: Path) -> None:
    from tests.learning.dicom import write_series

    stored = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # slices, rows, columns
    write_series(tmp_path / "ct", stored)  # axial; files named and numbered backwards
    volume = read_image(tmp_path / "ct")
    hu = stored.astype(np.float32) - 1024.0
    # RAS: x runs to the patient's right (columns run to the left), y to the front (rows run to the back),
    # z up (slice positions rise along the normal).
    assert volume.shape == (1, 6, 5, 4)
    assert np.array_equal(volume[0], hu[:, ::-1, ::-1].transpose(2, 1, 0))


def test_reading_a_broken_series_is_the_scan_s_error(tmp_path: Path) -> None:
    from tests.learning.dicom import write_series

    write_series(tmp_path / "ct", np.zeros((4, 3, 3), np.int16))
    (tmp_path / "ct" / "slice004.dcm").unlink()  # an inner slice (write_series names them out of order)
    with pytest.raises(DataError, match=r"ct' has 1 missing slice"):
        read_image(tmp_path / "ct")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty' holds no \.dcm files"):
        read_image(tmp_path / "empty")


def test_coronal_series_is_turned_to_ras(tmp_path: Path) -> None:
    from tests.learning.dicom import write_series

    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    # rows run to the left, columns downwards; the normal (cross product) points to the back
    write_series(tmp_path / "cor", stored, orientation=(1, 0, 0, 0, 0, -1), step=1.5)
    volume = read_image(tmp_path / "cor")[0]
    hu = stored.astype(np.float32) - 1024.0
    assert volume.shape == (5, 3, 4)  # x: columns, y: slices, z: rows
    for i, j, k in [(0, 0, 0), (4, 2, 3), (1, 2, 0), (3, 0, 2)]:
        assert volume[i, j, k] == hu[2 - j, 3 - k, 4 - i]


def test_nifti_volume_is_turned_to_ras(tmp_path: Path) -> None:
    import nibabel as nib

    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    # voxel axis 0 runs to the back (-y), axis 1 up (+z), axis 2 to the right (+x), 2 mm apart
    affine = np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "v.nii.gz")
    canonical = nib.as_closest_canonical(nib.load(tmp_path / "v.nii.gz")).get_fdata()
    assert np.array_equal(read_image(tmp_path / "v.nii.gz")[0], canonical)
    assert read_image(tmp_path / "v.nii.gz").shape == (1, 4, 2, 3)
    assert read_image(tmp_path / "v.nii.gz")[0, 3, 0, 0] == array[1, 0, 3]  # front-most row: axis 0 flipped


def test_series_folder_with_a_nifti_mask_loads_aligned(tmp_path: Path) -> None:
    import nibabel as nib

    from tests.learning.dicom import series_affine_ras, write_series

    stored = np.zeros((4, 6, 6), np.int16)
    stored[1:3, 1:3, 2:5] = 1100  # a bright block, HU 76
    write_series(tmp_path / "images" / "case1", stored)
    (tmp_path / "masks").mkdir()
    truth = (stored > 0).transpose(1, 2, 0).astype(np.uint8)  # rows, columns, slices: as dcm2niix lays it out
    nib.save(nib.Nifti1Image(truth, series_affine_ras()), tmp_path / "masks" / "case1.nii.gz")
    data = load_segmentation(tmp_path)
    assert data.names == ("case1",)
    assert tuple(data.images.shape) == (1, 1, 6, 6, 4)
    bright = data.images[0, 0] > 0
    assert bright.sum() > 0 and torch.equal(bright, data.targets[0, 0] > 0)  # voxel for voxel


def test_manifest_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    seg_folder(tmp_path, ["a", "b"])
    first = fingerprint(tmp_path)
    assert first.digest == fingerprint(tmp_path).digest
    assert first.summary()["files"] == 4
    write_png(tmp_path / "images" / "a.png", value=7)
    assert fingerprint(tmp_path).digest != first.digest


def test_split_is_deterministic_and_stable_under_additions() -> None:
    names = [f"img{i}" for i in range(50)]
    train, test = split_indices(names, 0.2, seed=3)
    assert (train, test) == split_indices(list(names), 0.2, seed=3)
    assert len(test) == 10 and not set(train) & set(test)
    more = [*names, "new"]
    _, test_more = split_indices(more, 0.2, seed=3)
    assert {more[i] for i in test_more} <= {names[i] for i in test} | {"new"}  # nothing else moved in
    assert split_indices(names, 0.2, seed=4)[1] != test


def test_train_test_split_on_data(small_coalition: Path) -> None:
    data = load_segmentation(small_coalition / "hospital-1" / "train")
    train, test = train_test_split(data, 0.25)
    assert len(train) + len(test) == len(data) and len(test) == 2
