"""`tclearn predict`: boxes, overlays and a JSON of findings from a model file and a folder of images or volumes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tclearn.cli.common import user_errors
from tclearn.errors import ConfigError
from tclearn.learning.defaults import MIN_FINDING_AREA

app = typer.Typer(help="Predict findings with a trained model.")


def parse_roi(text: str | None) -> tuple[int, ...] | None:
    """`--roi 96,96,64` as a tuple of positive integers; None when not given."""
    if text is None:
        return None
    try:
        roi = tuple(int(part) for part in text.split(","))
    except ValueError:
        roi = ()
    if not roi or min(roi) < 1:
        raise ConfigError(f"--roi must be positive integers separated by commas, e.g. 96,96,96; got {text!r}")
    return roi


@app.command()
def predict(
    model: str = typer.Option(..., "--model", help="Model file (.pt state dict or .safetensors); ledger IDs later."),
    input: Path = typer.Option(..., "--input", help="Folder of images or volumes, or with images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Folder for overlays/ and predictions.json."),
    config: Path | None = typer.Option(None, "--config", help="Model config JSON (default: beside the model)."),
    threshold: float = typer.Option(0.5, help="Foreground probability threshold."),
    min_area: int = typer.Option(
        MIN_FINDING_AREA, "--min-area", min=1, help="Smallest box kept, in pixels (voxels for a 3-D model)."
    ),
    roi: str | None = typer.Option(
        None,
        "--roi",
        help="Sliding window, one size per axis (e.g. 96,96,96): always for a 3-D model (default: the volume, "
        "at most 96 a side), for a 2-D one only on images larger than it. Multiples of the network's strides.",
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Masks -> connected components -> boxes with probabilities -> overlay PNGs (a mosaic of slices for a
    volume) and predictions.json."""
    from tclearn.learning.modelfile import load_model
    from tclearn.learning.predict import predict_folder

    with user_errors():
        roi_size = parse_roi(roi)
        net, cfg = load_model(model, config)
        report = predict_folder(net, cfg, input, out, threshold, device, min_area, roi_size)
    boxes = sum(len(r["boxes"]) for r in report["images"].values())
    Console().print(f"{len(report['images'])} images, {boxes} boxes -> {out}/predictions.json, {out}/overlays/")
