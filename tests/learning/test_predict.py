"""Prediction: boxes from masks, model files, overlays and JSON, and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tclearn.cli.data import app as data_app
from tclearn.cli.predict import app as predict_app
from tclearn.errors import ConfigError, NotFoundError
from tclearn.learning.modelfile import load_model
from tclearn.learning.models import build_model
from tclearn.learning.boxes import find_boxes
from tclearn.learning.overlays import overlay
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
