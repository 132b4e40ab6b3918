"""Prediction: boxes from masks, model files, overlays and JSON, and the CLI commands."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tclearn.cli.data import app as data_app
from tclearn.cli.predict import app as predict_app
from tclearn.errors import ConfigError, DataError, NotFoundError
from tclearn.learning.boxes import Box3D, find_boxes, find_boxes_3d
from tclearn.learning.modelfile import load_model
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.overlays import PRED_COLOUR, TRUTH_COLOUR, mosaic, mosaic_slices, overlay
from tclearn.learning.predict import predict_folder

CONFIG = {"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}}
runner = CliRunner()


def test_boxes_from_components() -> None:
    prob = np.zeros((10, 12), np.float32)
    prob[1:3, 1:4] = 0.9
    prob[5:9, 6:11] = 0.7
    boxes = find_boxes(prob)
    assert [(b.min_row, b.min_col, b.max_row, b.max_col, b.area) for b in boxes] == [
        (5, 6, 9, 11, 20),
        (1, 1, 3, 4, 6),
    ]
    assert boxes[0].probability == pytest.approx(0.7)
    assert find_boxes(np.zeros((4, 4), np.float32)) == []
    assert [b.area for b in find_boxes(prob, min_area=7)] == [20]


def test_overlay_puts_truth_beside_prediction() -> None:
    image = np.zeros((1, 32, 32), np.float32)
    assert overlay(image, []).size == (256, 256)
    assert overlay(image, [], []).size == (512, 256)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(build_model(CONFIG).state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(CONFIG))
    return path


def test_load_model_pt_and_safetensors(model_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net, _ = load_model(model_file)
    st = tmp_path / "other.safetensors"
    save_file(net.state_dict(), str(st))
    (tmp_path / "cfg.json").write_text(json.dumps({"model": CONFIG}))
    net2, _ = load_model(st, tmp_path / "cfg.json")
    assert all(torch.equal(v, net2.state_dict()[k]) for k, v in net.state_dict().items())


def test_model_id_is_not_resolved_yet() -> None:
    with pytest.raises(NotFoundError, match="ledger model IDs"):
        load_model("42")


def test_weights_that_do_not_fit(model_file: Path) -> None:
    model_file.with_suffix(".json").write_text(json.dumps({"arch": "unet"}))
    with pytest.raises(ConfigError, match="do not fit"):
        load_model(model_file)


def test_predict_folder_with_truth(model_file: Path, small_coalition: Path, tmp_path: Path) -> None:
    net, cfg = load_model(model_file)
    report = predict_folder(net, cfg, small_coalition / "global", tmp_path / "out", threshold=0.5, device="cpu")
    assert len(report["images"]) == 4 and all("truth" in r for r in report["images"].values())
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert written["images"].keys() == report["images"].keys()
    overlays = sorted((tmp_path / "out" / "overlays").glob("*.png"))
    assert len(overlays) == 4 and Image.open(overlays[0]).size == (512, 256)


def test_predict_dicom_input(model_file: Path, tmp_path: Path) -> None:
    from tests.learning.dicom import write_dicom

    (tmp_path / "dicoms").mkdir()
    write_dicom(tmp_path / "dicoms" / "scan.dcm", np.full((24, 24), 500, np.uint16))
    net, cfg = load_model(model_file)
    report = predict_folder(net, cfg, tmp_path / "dicoms", tmp_path / "out", device="cpu")
    assert list(report["images"]) == ["scan.dcm"]
    assert (tmp_path / "out" / "overlays" / "scan.png").is_file()


def test_cli_synth_and_predict(model_file: Path, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "c"), "--hospitals", "2", "--train", "2", "--test", "1"]
    result = runner.invoke(data_app, ["synth", *args, "--global", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "hospital-2" / "test" / "masks").is_dir()
    result = runner.invoke(
        predict_app,
        ["--model", str(model_file), "--input", str(tmp_path / "c" / "global"), "--out", str(tmp_path / "p")],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "predictions.json").is_file()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(predict_app, ["--model", "7", "--input", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "ledger model IDs" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(data_app, ["fingerprint", str(tmp_path / "missing")])
    assert result.exit_code == 1


def test_2d_records_keep_their_fields(model_file: Path, small_coalition: Path, tmp_path: Path) -> None:
    net, cfg = load_model(model_file)
    report = predict_folder(net, cfg, small_coalition / "global", tmp_path / "out", threshold=0.01, device="cpu")
    assert set(report) == {"model", "threshold", "min_area", "images"}
    entry = next(iter(report["images"].values()))
    assert set(entry) == {"boxes", "truth"}
    box_fields = {"label", "min_row", "min_col", "max_row", "max_col", "probability", "area"}
    assert all(set(b) == box_fields for b in entry["boxes"] + entry["truth"]) and entry["truth"]


# --- 3-D -------------------------------------------------------------------------------------------------------

UNET_3D = {
    "arch": "unet",
    "spatial_dims": 3,
    "options": {"channels": [4, 8], "strides": [2], "num_res_units": 1},
}
SHAPE = (24, 20, 28)  # x, y, z: larger than the 16^3 window on every axis
BLOB = ((3, 9), (10, 15), (15, 22))  # [min, max) along x, y, z: a different extent on each axis


def blob_volume(rng: np.random.Generator, shape: tuple[int, ...], blob: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A noisy grey volume `(1, *shape)` with one bright box, and its mask."""
    image = rng.normal(0.2, 0.05, (2, *shape)).astype(np.float32)
    image[1] = 0.0
    region = (slice(None), *(slice(low, high) for low, high in blob))
    image[region] += np.array([1.0, 1.0], np.float32)[:, None, None, None]
    return image


def write_nifti(path: Path, array: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


@pytest.fixture(scope="module")
def model_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-D U-Net trained to outline the bright box in 16^3 volumes (a few seconds on one thread)."""
    from tclearn.learning.data import ImageData, Task
    from tclearn.learning.modelfile import save_model
    from tclearn.learning.models import ModelConfig
    from tclearn.learning.train import TrainConfig, train_increment

    rng = np.random.default_rng(0)
    volumes = []
    for _ in range(8):
        size = rng.integers(3, 8, 3)
        low = rng.integers(0, 16 - size)
        volumes.append(blob_volume(rng, (16, 16, 16), tuple(zip(low.tolist(), (low + size).tolist(), strict=True))))
    stacked = torch.from_numpy(np.stack(volumes))
    names = tuple(f"v{i}" for i in range(len(volumes)))
    data = ImageData(Task.SEGMENTATION, stacked[:, :1], (stacked[:, 1:] > 0.5).float(), names)
    config = ModelConfig.from_dict(UNET_3D)
    torch.manual_seed(0)
    increment = train_increment(build_model(config), data, TrainConfig(epochs=40, batch_size=4, lr=0.05, device="cpu"))
    return save_model(tmp_path_factory.mktemp("model3d") / "unet3d.pt", increment.weights, config)


@pytest.fixture
def volumes(tmp_path: Path) -> Path:
    """`images/scan.nii.gz` with the blob at BLOB and its mask in `masks/`."""
    volume = blob_volume(np.random.default_rng(5), SHAPE, BLOB)
    write_nifti(tmp_path / "vols" / "images" / "scan.nii.gz", volume[0])
    write_nifti(tmp_path / "vols" / "masks" / "scan.nii.gz", (volume[1] > 0.5).astype(np.uint8))
    return tmp_path / "vols"


def extents(box: dict[str, int]) -> tuple[tuple[int, int], ...]:
    return tuple((box[f"min_{axis}"], box[f"max_{axis}"]) for axis in "xyz")


def test_boxes_3d_from_components() -> None:
    prob = np.zeros((10, 12, 14), np.float32)
    prob[1:3, 2:5, 3:7] = 0.9  # 24 voxels
    prob[6:9, 6:10, 8:13] = 0.7  # 60 voxels
    prob[9, 11, 13] = 0.8  # a speck: one voxel
    boxes = find_boxes_3d(prob, min_voxels=2)
    assert [extents(asdict(b)) for b in boxes] == [((6, 9), (6, 10), (8, 13)), ((1, 3), (2, 5), (3, 7))]
    assert [b.voxels for b in boxes] == [60, 24] and boxes[0].probability == pytest.approx(0.7)
    assert len(find_boxes_3d(prob)) == 3 and find_boxes_3d(np.zeros((4, 4, 4), np.float32)) == []
    diagonal = np.zeros((4, 4, 4), np.float32)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1.0  # touching at a corner: one finding, as in 2-D
    assert len(find_boxes_3d(diagonal)) == 1


def z_boxes(*spans: tuple[int, int]) -> list[Box3D]:
    return [Box3D("f", 0, 0, low, 1, 1, high, 0.9, 1) for low, high in spans]


@pytest.mark.parametrize(
    ("depth", "spans", "expected"),
    [
        (8, [], list(range(8))),  # a short volume: every slice
        (40, [], [round(i * 39 / 15) for i in range(16)]),  # nothing found: 16 slices spread over the volume
        (40, [(10, 13)], [10, 11, 12]),  # every slice through a thin box
        # both centres (34, 2), then 14 slices spread over z 2..39
        (40, [(30, 40), (2, 3)], [2, 5, 8, 11, 13, 16, 19, 22, 25, 28, 30, 33, 34, 36, 39]),
    ],
)
def test_mosaic_slices(depth: int, spans: list[tuple[int, int]], expected: list[int]) -> None:
    assert mosaic_slices(depth, z_boxes(*spans)) == expected


def test_mosaic_slices_keep_every_box_centre() -> None:
    spans = [(z, z + 1) for z in range(0, 60, 3)]  # 20 one-slice boxes: more centres than tiles
    chosen = mosaic_slices(60, z_boxes(*spans))
    assert chosen == list(range(0, 48, 3))  # the first 16 boxes' centres, in the order given


def test_mosaic_draws_boxes_on_their_slices() -> None:
    volume = np.zeros((1, *SHAPE), np.float32)
    predicted = [Box3D("finding", 3, 10, 15, 9, 15, 22, 0.9, 210)]
    truth = [Box3D("truth", 3, 10, 15, 9, 15, 22, 1.0, 210)]
    slices = [0, 18, 27]
    picture = mosaic(volume, predicted, truth, slices)
    # 24 x 20 slices scaled 5x (128 // 24) to 120 x 100 tiles, two per row, under a 14-pixel legend.
    assert picture.size == (2 * 120, 14 + 2 * 100)
    pixels = np.asarray(picture)

    def colours(tile: int) -> set[tuple[int, ...]]:
        row, col = divmod(tile, 2)
        block = pixels[14 + row * 100 : 14 + (row + 1) * 100, col * 120 : (col + 1) * 120]
        return {tuple(int(v) for v in p) for p in block.reshape(-1, 3)}

    assert PRED_COLOUR in colours(1) and TRUTH_COLOUR in colours(1)  # z 18 crosses the box
    assert PRED_COLOUR not in colours(0) and TRUTH_COLOUR not in colours(2)  # z 0 and z 27 do not
    # The box is drawn where it is: columns along x (3..9 -> 15..44 px), rows along y (10..15 -> 50..74 px).
    tile = pixels[14 : 14 + 100, 120:240]
    red = np.argwhere(np.all(tile == PRED_COLOUR, axis=-1))
    assert red[:, 0].min() >= 50 - 11 and red[:, 0].max() == 74  # label text sits just above the box
    assert red[:, 1].min() == 15 and red[:, 1].max() <= 44 + 30


def test_predict_folder_3d_finds_the_blob(model_3d: Path, volumes: Path, tmp_path: Path) -> None:
    net, cfg = load_model(model_3d)
    out = tmp_path / "out"
    report = predict_folder(net, cfg, volumes, out, threshold=0.5, device="cpu", min_area=5, roi_size=(16, 16, 16))
    entry = report["images"]["scan.nii.gz"]
    assert entry["roi_size"] == [16, 16, 16]
    assert extents(entry["truth"][0]) == BLOB and entry["truth"][0]["voxels"] == 6 * 5 * 7
    found = entry["boxes"][0]  # the largest
    for (low, high), (want_low, want_high) in zip(extents(found), BLOB, strict=True):
        assert abs(low - want_low) <= 1 and abs(high - want_high) <= 1, (extents(found), BLOB)
    assert 0.5 < found["probability"] <= 1.0 and abs(found["voxels"] - 210) <= 60
    assert 18 in entry["slices"]  # the blob's central slice
    assert json.loads((out / "predictions.json").read_text())["images"]["scan.nii.gz"] == entry
    picture = Image.open(out / "overlays" / "scan.png")
    columns = math.ceil(math.sqrt(len(entry["slices"])))
    rows = math.ceil(len(entry["slices"]) / columns)
    assert picture.size == (columns * 120, 14 + rows * 100)


def test_cli_predicts_volumes(model_3d: Path, volumes: Path, tmp_path: Path) -> None:
    args = ["--model", str(model_3d), "--input", str(volumes / "images"), "--device", "cpu"]
    result = runner.invoke(predict_app, [*args, "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert report["images"]["scan.nii.gz"]["roi_size"] == [24, 20, 28]  # the volume is one window
    assert "truth" not in report["images"]["scan.nii.gz"]
    result = runner.invoke(predict_app, [*args, "--out", str(tmp_path / "q"), "--roi", "16,16,16"])
    assert result.exit_code == 0, result.output
    for roi, message in (("16,x,16", "positive integers"), ("15,15,15", "multiples of 2")):
        result = runner.invoke(predict_app, [*args, "--out", str(tmp_path / "r"), "--roi", roi])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "r").exists()


def test_bad_input_for_a_3d_model_writes_nothing(model_3d: Path, volumes: Path, tmp_path: Path) -> None:
    net, cfg = load_model(model_3d)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(flat / "xray.png")
    with pytest.raises(DataError, match=r"image .*xray\.png.* \(2D\); the model expects 1 channel\(s\), 3D"):
        predict_folder(net, cfg, flat, tmp_path / "out", device="cpu")
    with pytest.raises(ConfigError, match="threshold must be between 0 and 1"):
        predict_folder(net, cfg, volumes, tmp_path / "out", threshold=1.5)
    write_nifti(volumes / "masks" / "scan.nii.gz", np.zeros((24, 20, 27), np.uint8))
    with pytest.raises(DataError, match=r"mask .*scan\.nii\.gz.* is \(24, 20, 27\) but its image"):
        predict_folder(net, cfg, volumes, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
    net2d, cfg2d = build_model(CONFIG), ModelConfig.from_dict(CONFIG)
    with pytest.raises(DataError, match=r"volume .*scan\.nii\.gz.* \(3D\); the model expects 1 channel\(s\), 2D"):
        predict_folder(net2d, cfg2d, volumes / "images", tmp_path / "out", device="cpu")


def test_a_folder_entry_is_named_by_its_whole_name(
    model_3d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DICOM series is a folder (read by `read_image` once it supports them): its overlay keeps its full name."""
    from tclearn.learning import predict as predict_module

    series = tmp_path / "in" / "series.1.2"
    series.mkdir(parents=True)
    volume = blob_volume(np.random.default_rng(1), (16, 16, 16), ((4, 8), (4, 8), (4, 8)))[:1]
    monkeypatch.setattr(predict_module, "list_images", lambda _folder: [series])
    monkeypatch.setattr(predict_module, "read_image", lambda _path: volume)
    net, cfg = load_model(model_3d)
    report = predict_folder(net, cfg, tmp_path / "in", tmp_path / "out", device="cpu")
    assert list(report["images"]) == ["series.1.2"]
    assert (tmp_path / "out" / "overlays" / "series.1.2.png").is_file()
