"""Data folders: loading, the errors a user meets, manifests and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.data import Task, load_csv, load_dataset, load_segmentation
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


def test_nifti_and_dicom_are_read(tmp_path: Path) -> None:
    import nibabel as nib

    array = np.zeros((8, 8), np.float32)
    array[1:3, 1:4] = 1
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "x.nii.gz")
    from tclearn.learning.data import read_image

    assert read_image(tmp_path / "x.nii.gz").shape == (1, 8, 8)
    from tests.learning.dicom import write_dicom

    write_dicom(tmp_path / "y.dcm", (array * 1000).astype(np.uint16))
    image = read_image(tmp_path / "y.dcm")
    assert image.shape[0] == 1 and image.size == 64 and image.max() > 0


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
