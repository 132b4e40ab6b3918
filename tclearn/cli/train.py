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
    import torch

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
    model: str | None = typer.Option(
        None, "--model", help="Model file (.pt or .safetensors) with its config beside it."
    ),
    model_id: int | None = typer.Option(
        None,
        "--model-id",
        min=0,
        help="Instead of --model: a committed model on chain, opened by the site of --config.",
    ),
    data: Path = typer.Option(..., "--data", help="Test folder or CSV (G or a local L)."),
    task: str = typer.Option("segmentation", help="segmentation, classification or multilabel (folders)."),
    config: Path | None = typer.Option(
        None, "--config", help="Model config JSON (default: beside the model); with --model-id the site's member.toml."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    roi: str = typer.Option("", "--roi", help="Sliding window for volumes, e.g. 64,64,64 (default: whole)."),
    intensity: str = typer.Option("as_stored", "--intensity", help="as_stored, ct (with --window) or zscore."),
    window: str = typer.Option("", "--window", help="CT window in HU, e.g. -100,200."),
    j2k_ratios: str = typer.Option(
        "", "--j2k-ratios", help="Robustness report: also score at these JPEG 2000 ratios, e.g. 1,10,20,40,64."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="With --j2k-ratios: write robustness.json and robustness.png into this folder."
    ),
) -> None:
    """Print a model's metrics on a data set as JSON (Dice/IoU, accuracy/AUC/precision/recall, or per-label AUC);
    with --j2k-ratios, its score on the data as read and after JPEG 2000 coding at each ratio."""
    from tclearn.errors import ConfigError
    from tclearn.learning.evaluate import evaluate as run_evaluation
    from tclearn.learning.folders import open_folder
    from tclearn.learning.robustness import parse_ratios, robustness, write_report

    with user_errors():
        if (model is None) == (model_id is None):
            raise ConfigError("name the model to evaluate: either --model FILE or --model-id N (with --config)")
        if report is not None and not j2k_ratios:
            raise ConfigError("--report writes the robustness report: give --j2k-ratios too")
        ratios = parse_ratios(j2k_ratios) if j2k_ratios else ()
        net = _network(model, model_id, config)
        samples = open_folder(data, task, reading(intensity, window))
        if ratios:
            found = robustness(net, samples, ratios, batch_size, roi_size=sizes(roi, "--roi"))
            if report is not None:
                write_report(found, report)
            console.print_json(json.dumps({"samples": len(samples), **found.to_dict()}))
            return
        result = run_evaluation(net, samples, batch_size, roi_size=sizes(roi, "--roi"))
    console.print_json(json.dumps({"samples": result.samples, "score": result.score, **result.metrics}))


def _network(model: str | None, model_id: int | None, config: Path | None) -> torch.nn.Module:
    """The model file's network, or committed model `model_id` opened verified as the site of `config`."""
    if model is not None:
        from tclearn.learning.modelfile import load_model

        return load_model(model, config)[0]
    from tclearn.coalition.committed import committed_network
    from tclearn.site.config import MemberSettings, load_site_config
    from tclearn.site.open import open_site

    assert model_id is not None
    site = open_site(load_site_config(config or Path("member.toml"), MemberSettings))
    try:
        return committed_network(site.coalition, site.hospital, model_id)
    finally:
        site.close()
