"""The JPEG 2000 robustness report: scores per ratio (library) and `tclearn evaluate --j2k-ratios` (JSON + PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tclearn.cli.train import app as train_app
from tclearn.errors import ConfigError
from tclearn.learning.models import build_model
from tclearn.learning.robustness import REPORT_JSON, REPORT_PNG, parse_ratios, robustness, write_report
from tests.learning.test_coding_augment import ct_set

runner = CliRunner()


@pytest.mark.parametrize(("text", "ratios"), [("1,10,20", (1.0, 10.0, 20.0)), (" 64 ", (64.0,)), ("1.5,", (1.5,))])
def test_ratios_parse(text: str, ratios: tuple[float, ...]) -> None:
    assert parse_ratios(text) == ratios


@pytest.mark.parametrize("text", ["", "1,x", "0.5", "10,nan"])
def test_bad_ratios_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ratio"):
        parse_ratios(text)


def test_lossless_scores_as_read_and_lossy_reports_its_achieved_ratio(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}})
    data = ct_set(4, 128)
    found = robustness(model, data, (1.0, 20.0))
    lossless, lossy = found.ratios
    assert found.metric == "dice"
    assert lossless.score == pytest.approx(found.baseline.score) and lossless.metrics["iou"] == pytest.approx(
        found.baseline.metrics["iou"]
    )
    assert lossless.achieved_ratio > 1.0
    assert lossy.achieved_ratio == pytest.approx(20.0, rel=0.15)
    json_path, png_path = write_report(found, tmp_path / "report")
    assert json.loads(json_path.read_text())["ratios"][1]["ratio"] == 20.0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_cli_writes_the_report(small_coalition: Path, tmp_path: Path) -> None:
    data = small_coalition / "global"
    model = tmp_path / "m.pt"
    trained = runner.invoke(
        train_app,
        ["train", "--data", str(small_coalition / "hospital-1" / "train"), "--out", str(model), "--epochs", "1"],
    )
    assert trained.exit_code == 0, trained.output
    args = ["evaluate", "--model", str(model), "--data", str(data), "--j2k-ratios", "1,10"]
    result = runner.invoke(train_app, [*args, "--report", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [r["ratio"] for r in shown["ratios"]] == [1.0, 10.0] and shown["samples"] == 4
    assert shown["ratios"][0]["score"] == pytest.approx(shown["baseline"]["score"])
    assert (tmp_path / "rep" / REPORT_PNG).stat().st_size > 0
    assert json.loads((tmp_path / "rep" / REPORT_JSON).read_text())["metric"] == "dice"
    assert np.isfinite(shown["ratios"][1]["achieved_ratio"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--j2k-ratios", "0.5"], "ratio must be a number >= 1"),
        (["--report", "r"], "give --j2k-ratios too"),
        (["--model-id", "0"], "either --model FILE or --model-id N"),
    ],
)
def test_evaluate_cli_errors_are_one_line(small_coalition: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(
        train_app, ["evaluate", "--model", "m.pt", "--data", str(small_coalition / "global"), *extra]
    )
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
