"""`tclearn predict`: boxes, overlays and a JSON of findings from a model file and a folder of images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tclearn.cli.common import user_errors
from tclearn.learning.defaults import MIN_FINDING_AREA

app = typer.Typer(help="Predict findings with a trained model.")


@app.command()
def predict(
    model: str = typer.Option(..., "--model", help="Model file (.pt state dict or .safetensors); ledger IDs later."),
    input: Path = typer.Option(..., "--input", help="Folder of images, or with images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Folder for overlays/ and predictions.json."),
    config: Path | None = typer.Option(None, "--config", help="Model config JSON (default: beside the model)."),
    threshold: float = typer.Option(0.5, help="Foreground probability threshold."),
    min_area: int = typer.Option(MIN_FINDING_AREA, "--min-area", min=1, help="Smallest box kept, in pixels."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Masks -> connected components -> boxes with probabilities -> overlay PNGs and predictions.json."""
    from tclearn.learning.modelfile import load_model
    from tclearn.learning.predict import predict_folder

    with user_errors():
        net, cfg = load_model(model, config)
        report = predict_folder(net, cfg, input, out, threshold, device, min_area)
    boxes = sum(len(r["boxes"]) for r in report["images"].values())
    Console().print(f"{len(report['images'])} images, {boxes} boxes -> {out}/predictions.json, {out}/overlays/")
