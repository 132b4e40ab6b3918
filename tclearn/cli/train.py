"""`tclearn train` and `tclearn evaluate`: a local increment and its scores, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tclearn.cli.common import user_errors
from tclearn.learning.defaults import LOCAL_TRAINING

app = typer.Typer(help="Train a local increment and evaluate models.", no_args_is_help=True)
console = Console()


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
) -> None:
    """Train from the parent on local data; write the weights, their config and their metadata."""
    from tclearn.learning.data import Task
    from tclearn.learning.evaluate import evaluate as run_evaluation
    from tclearn.learning.folders import load_dataset
    from tclearn.learning.manifest import fingerprint
    from tclearn.learning.metadata import increment_metadata
    from tclearn.learning.modelfile import load_model, save_model
    from tclearn.learning.models import ModelConfig, build_model
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
        )
        dataset = load_dataset(data, task)
        if parent is not None:
            model, cfg = load_model(parent)
        else:
            classes = len(dataset.classes)
            channels = dataset.images.shape[1]
            multilabel = {"multilabel": True} if dataset.task is Task.MULTILABEL else {}
            cfg = ModelConfig.from_dict(
                {"arch": arch, "in_channels": channels, **({"out_channels": classes} if classes else {}), **multilabel}
            )
            model = build_model(cfg)
        increment = train_increment(model, dataset, config)
        model.load_state_dict(increment.weights)
        scores = run_evaluation(model, dataset).metrics
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
) -> None:
    """Print a model's metrics on a data set as JSON (Dice/IoU, accuracy/AUC/precision/recall, or per-label AUC)."""
    from tclearn.learning.evaluate import evaluate as run_evaluation
    from tclearn.learning.folders import load_dataset
    from tclearn.learning.modelfile import load_model

    with user_errors():
        net, _ = load_model(model, config)
        result = run_evaluation(net, load_dataset(data, task), batch_size)
    console.print_json(json.dumps({"samples": result.samples, "score": result.score, **result.metrics}))
