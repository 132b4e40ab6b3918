"""`tclearn predict`: boxes, overlays and a JSON of findings from a model file and a folder of images or volumes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tclearn.cli.common import sizes, user_errors
from tclearn.learning.defaults import MIN_FINDING_AREA

app = typer.Typer(help="Predict findings with a trained model.")


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
        roi_size = sizes(roi, "--roi")
        net, cfg = load_model(model, config)
        report = predict_folder(net, cfg, input, out, threshold, device, min_area, roi_size)
    boxes = sum(len(r["boxes"]) for r in report["images"].values())
    Console().print(f"{len(report['images'])} images, {boxes} boxes -> {out}/predictions.json, {out}/overlays/")
