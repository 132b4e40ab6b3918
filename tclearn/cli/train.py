"""`tclearn train` and `tclearn evaluate`: a local increment and its scores, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from tclearn.cli.common import sizes, user_errors
from tclearn.learning.defaults import LOCAL_TRAINING

if TYPE_CHECKING:
    from tclearn.learning.volumes import Intensity


app = typer.Typer(help="Train a local increment and evaluate models.", no_args_is_help=True)
console = Console()


def reading(intensity: str, window: str) -> Intensity:
    """`--intensity` and `--window low,high` (HU) as the site intensity a folder is read through."""
    from tclearn.errors import ConfigError
    from tclearn.learning.volumes import Intensity

    try:
        values = tuple(float(part) for part in window.split(",")) if window.strip() else None
    except ValueError:
        raise ConfigError(f"--window takes comma-separated numbers, got {window!r}") from None
    return Intensity(intensity, values)  # type: ignore[arg-type]


@app.command()
def train(
    data: Path = typer.Option(
        ..., "--data", help="Training folder (images/ + masks/, class folders, or images/ + labels.csv) or CSV."
    ),
    out: Path = typer.Option(..., "--out", help="Model file to write (.pt or .safetensors)."),
    parent: Path | None = typer.Option(None, "--parent", help="Parent model file; default: a fresh model."),
    arch: str = typer.Option("unet", help="Architecture of a fresh model (ignored with --parent)."),
    task: str = typer.Option("segmentation", help="segmentation, classification or multilabel (folders)."),
    epochs: int = typer.Option(LOCAL_TRAINING.epochs, min=1),
    batch_size: int = typer.Option(LOCAL_TRAINING.batch_size, "--batch-size", min=1),
    min_batch_size: int = typer.Option(
        LOCAL_TRAINING.min_batch_size, "--min-batch-size", min=1, help="The coalition's minimum."
    ),
    lr: float = typer.Option(LOCAL_TRAINING.lr),
    optimiser: str = typer.Option("adam", help="adam, adamw or sgd."),
    seed: int = typer.Option(LOCAL_TRAINING.seed),
    augment: str = typer.Option(
        "", "--augment", help="Comma-separated: flip, rotate90, rotate, intensity, noise, j2k:R (JPEG 2000 to R:1)."
    ),
    patch: str = typer.Option("", "--patch", help="Train on random crops of this size, e.g. 64,64,64."),
    intensity: str = typer.Option("as_stored", "--intensity", help="as_stored, ct (with --window) or zscore."),
    window: str = typer.Option("", "--window", help="CT window in HU, e.g. -100,200."),
) -> None:
    """Train from the parent on local data; write the weights, their config and their metadata."""
    from tclearn.learning.data import Task
    from tclearn.learning.evaluate import evaluate as run_evaluation
    from tclearn.learning.folders import open_folder
    from tclearn.learning.manifest import fingerprint
    from tclearn.learning.metadata import increment_metadata
    from tclearn.learning.modelfile import load_model, save_model
    from tclearn.learning.models import ModelConfig, build_model
    from tclearn.learning.samples import first_pair
    from tclearn.learning.train import TrainConfig, train_increment

    with user_errors():
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimiser=optimiser,  # type: ignore[arg-type]  # validated into Optimiser by TrainConfig
            seed=seed,
            min_batch_size=min_batch_size,
            progress=True,
            augment=tuple(n.strip() for n in augment.split(",") if n.strip()),
            patch=sizes(patch, "--patch"),
        )
        dataset = open_folder(data, task, reading(intensity, window))
        if parent is not None:
            model, cfg = load_model(parent)
        else:
            first = first_pair(dataset)[0]
            classes = len(dataset.classes)
            multilabel = {"multilabel": True} if dataset.task is Task.MULTILABEL else {}
            shape = {"in_channels": first.shape[1], **({"spatial_dims": first.dim() - 2} if first.dim() > 2 else {})}
            cfg = ModelConfig.from_dict(
                {"arch": arch, **shape, **({"out_channels": classes} if classes else {}), **multilabel}
            )
            model = build_model(cfg)
        increment = train_increment(model, dataset, config)
        model.load_state_dict(increment.weights)
        scores = run_evaluation(model, dataset, roi_size=config.patch).metrics
        meta = increment_metadata(cfg, increment.facts, fingerprint(data), str(parent) if parent else None, scores)
        save_model(out, increment.weights, cfg, meta)
    console.print_json(json.dumps({"out": str(out), "training": increment.facts.to_dict(), "train_scores": scores}))


@app.command()
def evaluate(
    model: str = typer.Option(..., "--model", help="Model file (.pt or .safetensors) with its config beside it."),
    data: Path = typer.Option(..., "--data", help="Test folder or CSV (G or a local L)."),
    task: str = typer.Option("segmentation", help="segmentation, classification or multilabel (folders)."),
    config: Path | None = typer.Option(None, "--config", help="Model config JSON (default: beside the model)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    roi: str = typer.Option("", "--roi", help="Sliding window for volumes, e.g. 64,64,64 (default: whole)."),
    intensity: str = typer.Option("as_stored", "--intensity", help="as_stored, ct (with --window) or zscore."),
    window: str = typer.Option("", "--window", help="CT window in HU, e.g. -100,200."),
) -> None:
    """Print a model's metrics on a data set as JSON (Dice/IoU, accuracy/AUC/precision/recall, or per-label AUC)."""
    from tclearn.learning.evaluate import evaluate as run_evaluation
    from tclearn.learning.folders import open_folder
    from tclearn.learning.modelfile import load_model

    with user_errors():
        net, _ = load_model(model, config)
        samples = open_folder(data, task, reading(intensity, window))
        result = run_evaluation(net, samples, batch_size, roi_size=sizes(roi, "--roi"))
    console.print_json(json.dumps({"samples": result.samples, "score": result.score, **result.metrics}))
