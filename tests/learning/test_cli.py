"""The command line end to end: synth -> train -> evaluate -> predict, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tclearn.cli.data import app as data_app
from tclearn.cli.predict import app as predict_app
from tclearn.cli.train import app as train_app
from tests.learning.volumes import ct_volumes

runner = CliRunner()


def test_synth_train_evaluate_predict(tmp_path: Path) -> None:
    coalition = tmp_path / "c"
    result = runner.invoke(
        data_app,
        [
            "synth",
            "--out",
            str(coalition),
            "--hospitals",
            "2",
            "--train",
            "8",
            "--test",
            "2",
            "--global",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    model = tmp_path / "m" / "h1.safetensors"
    args = [
        "train",
        "--data",
        str(coalition / "hospital-1" / "train"),
        "--out",
        str(model),
        "--batch-size",
        "4",
    ]
    result = runner.invoke(train_app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads(model.with_suffix(".meta.json").read_text())
    assert meta["training"]["samples"] == 8 and meta["data"]["files"] == 16 and len(meta["arch_hash"]) == 64
    assert meta["model"]["arch"] == "unet" and "dice" in meta["scores"]

    child = tmp_path / "m" / "h2.pt"
    args = [
        "train",
        "--data",
        str(coalition / "hospital-2" / "train"),
        "--out",
        str(child),
        "--parent",
        str(model),
    ]
    assert runner.invoke(train_app, [*args, "--batch-size", "4"]).exit_code == 0
    assert json.loads(child.with_suffix(".meta.json").read_text())["parent"] == str(model)

    result = runner.invoke(train_app, ["evaluate", "--model", str(child), "--data", str(coalition / "global")])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) >= {"dice", "iou", "score", "samples"}

    out = tmp_path / "pred"
    result = runner.invoke(
        predict_app,
        ["--model", str(child), "--input", str(coalition / "hospital-2" / "test"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_min_batch_size_refused_on_the_command_line(small_coalition: Path, tmp_path: Path) -> None:
    data = small_coalition / "hospital-1" / "train"
    args = ["train", "--data", str(data), "--out", str(tmp_path / "m.pt"), "--batch-size", "2"]
    result = runner.invoke(train_app, [*args, "--min-batch-size", "4"])
    assert result.exit_code == 1 and "minimum batch size 4" in result.output
    assert "Traceback" not in result.output


def test_missing_mask_on_the_command_line(tmp_path: Path) -> None:
    from tests.learning.test_data import seg_folder, write_png

    seg_folder(tmp_path / "d", ["a"])
    write_png(tmp_path / "d" / "images" / "orphan.png")
    result = runner.invoke(train_app, ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "orphan.png" in result.output


def test_train_and_evaluate_volumes_from_disk(tmp_path: Path) -> None:
    data = ct_volumes(tmp_path / "vols", 4)
    model = tmp_path / "m3d.safetensors"
    reading = ["--intensity", "ct", "--window", "-100,200"]
    args = ["train", "--data", str(data), "--out", str(model), "--epochs", "1", "--batch-size", "2"]
    result = runner.invoke(train_app, [*args, "--patch", "16,16,16", "--augment", "flip,intensity", *reading])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)["training"]
    assert facts["augmentation"] == ["flip", "intensity"] and facts["patch"] == [16, 16, 16]
    assert json.loads(model.with_suffix(".json").read_text())["spatial_dims"] == 3
    scored = runner.invoke(
        train_app, ["evaluate", "--model", str(model), "--data", str(data), "--roi", "16,16,16", *reading]
    )
    assert scored.exit_code == 0, scored.output
    assert 0.0 <= json.loads(scored.stdout)["dice"] <= 1.0
    bad = runner.invoke(train_app, [*args, "--window", "low,high", "--intensity", "ct"])
    assert bad.exit_code != 0 and "--window takes comma-separated numbers, got 'low,high'" in bad.output
    unknown = runner.invoke(train_app, [*args, "--augment", "elastic"])
    assert unknown.exit_code != 0 and "unknown augmentation(s) elastic" in unknown.output
