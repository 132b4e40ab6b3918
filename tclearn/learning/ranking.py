"""A folder of unlabelled images ranked for annotation (`tclearn active rank`), and the annotated ones added to a
training folder (`tclearn active add`).

`rank` reads every image as training does (`read_image`, then the site's `Intensity`), scores it by the chosen
method (`tclearn.learning.active`), orders the folder with the density and diversity terms and writes, atomically
(a temporary folder renamed into place), `OUT/ranking.json` and `OUT/thumbnails/<rank>-<name>.png`: the image in
grey with the committee's mean probability in red (a volume: its axial slice where the committee disagrees most).
`add` copies each chosen image that has a mask, and its mask, into a segmentation training folder and lists their
sha256 in its `committee.json`; it stages everything beside the folder and changes nothing on any error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from tclearn.errors import ConfigError, DataError, NotFoundError
from tclearn.learning.active import (
    COMMITTEE_FILE,
    COMMITTEE_SCHEMA,
    MEASURES,
    descriptor,
    dropout_maps,
    file_sha256,
    random_scores,
    read_committee,
    select,
    tta_maps,
    votes,
)
from tclearn.learning.choices import DEFAULT_DENSITY, DEFAULT_MEASURE, Measure, Method
from tclearn.learning.data import Task, find_mask, list_images, read_image, read_mask, stem
from tclearn.learning.evaluate import probabilities
from tclearn.learning.inference import infer
from tclearn.learning.volumes import Intensity

RANKING_SCHEMA = "tclearn.active-ranking/1"
RANKING_FILE = "ranking.json"
THUMBNAILS = "thumbnails"
DEFAULT_DIVERSITY = 0.3
THUMB_EDGE = 256
OVERLAY = (255, 48, 48)


@dataclass(frozen=True)
class CommitteeModel:
    """One committed model of the committee: its id and hash on chain, who proposed it, and the network."""

    model_id: int
    proposer: str
    model_hash: str
    network: nn.Module

    def record(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "proposer": self.proposer, "model_hash": self.model_hash}


def check_budget(budget: int, pool: int, folder: Path) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= pool:
        raise ConfigError(
            f"budget {budget!r} must be between 1 and the {pool} images of {str(folder)!r}; "
            "ask for fewer images or add to the folder"
        )


def parse_budget(text: str, pool: int) -> int:
    """A budget as given: a count (`25`) or a share of the pool (`10%`, rounded, at least 1)."""
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, round(share / 100 * pool))
        return int(text)
    except ValueError:
        raise ConfigError(f"budget {text!r} must be a count (e.g. 25) or a share of the folder (e.g. 10%)") from None


def _maps(models: Sequence[CommitteeModel], x: torch.Tensor, method: Method, task: Task, device: str) -> torch.Tensor:
    """The probability maps whose disagreement scores image `x` `(1, C, *spatial)`; `(K, ...)`."""

    def predict(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(batch: torch.Tensor) -> torch.Tensor:
            probs = probabilities(infer(network, batch, device=device, task=task))
            if task is Task.SEGMENTATION and probs.shape[1] > 1:  # channels: background first, any other is foreground
                return 1.0 - probs[:, :1]
            return probs

        return run

    if method is Method.TTA:
        return tta_maps(predict(models[0].network), x)
    if method is Method.DROPOUT:
        return dropout_maps(models[0].network, x)
    return torch.cat([predict(m.network)(x) for m in models])


def thumbnail(image: np.ndarray, maps: torch.Tensor) -> Image.Image:
    """Image `(C, *spatial)` in grey with the mean foreground probability of `maps` in red (a volume: the slice
    along its last axis where the votes disagree most); classification maps show the image alone."""
    grey = image.mean(axis=0)
    heat = maps.float().mean(dim=0)[0].numpy() if maps.dim() == image.ndim + 1 else np.zeros_like(grey)
    if grey.ndim == 3:
        voted = votes(maps).float().mean(dim=0)[0]
        spread = (voted * (1 - voted)).sum(dim=(0, 1)) if maps.dim() == 5 else torch.zeros(grey.shape[-1])
        z = int(spread.argmax()) if float(spread.max()) > 0 else grey.shape[-1] // 2
        grey, heat = grey[..., z], heat[..., z]
    low, high = np.percentile(grey, (1.0, 99.0))
    shown = np.clip((grey - low) / (high - low), 0, 1) if high > low else np.zeros_like(grey)
    rgb = np.repeat(shown[..., None], 3, axis=-1)
    alpha = 0.6 * np.clip(heat, 0, 1)[..., None]
    rgb = (1 - alpha) * rgb + alpha * np.asarray(OVERLAY) / 255.0
    picture = Image.fromarray((rgb * 255).round().astype(np.uint8))
    scale = max(1, THUMB_EDGE // max(picture.size))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target`, renamed to `target` when the block ends without error (else removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield temp
        os.replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def rank(
    models: Sequence[CommitteeModel],
    unlabelled: Path,
    budget: int,
    out: Path,
    method: Method = Method.COMMITTEE,
    measure: Measure = DEFAULT_MEASURE,
    intensity: Intensity = Intensity(),
    seed: int = 0,
    diversity: float = DEFAULT_DIVERSITY,
    task: Task = Task.SEGMENTATION,
    device: str = "auto",
    density: float = DEFAULT_DENSITY,
) -> dict[str, Any]:
    """Rank the images of `unlabelled` by `method` and write `out` (see the module); returns the ranking."""
    files = list_images(unlabelled)
    check_budget(budget, len(files), unlabelled)
    if out.exists():
        raise ConfigError(f"the ranking folder {str(out)!r} exists; name another --out or remove it")
    if method is Method.COMMITTEE and len(models) < 2:
        raise ConfigError(f"a committee needs at least two models, got {len(models)}")
    if method is not Method.RANDOM and not models:
        raise ConfigError(f"method {method.value} needs a model")
    score_of = MEASURES[measure]
    scores, descriptors, pictures = [], [], []
    for file in files:
        image = intensity.apply(read_image(file))
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        descriptors.append(descriptor(x))
        if method is Method.RANDOM:
            pictures.append(thumbnail(image, torch.zeros((1, 1, *image.shape[1:]))))
            continue
        maps = _maps(models, x[None], method, task, device)
        scores.append(score_of(maps))
        pictures.append(thumbnail(image, maps))
    if method is Method.RANDOM:  # the baseline: a uniform draw, neither weighted nor spread
        scores = [float(s) for s in random_scores(len(files), seed)]
        diversity = density = 0.0
    order = select(scores, np.stack(descriptors), diversity, density)
    ranked: list[dict[str, Any]] = []
    for position, index in enumerate(order, start=1):
        file = files[index]
        ranked.append(
            {
                "rank": position,
                "name": file.name,
                "sha256": file_sha256(file),
                "score": scores[index],
                "chosen": position <= budget,
                "thumbnail": f"{THUMBNAILS}/{position}-{stem(file)}.png",
            }
        )
    ranking = {
        "schema": RANKING_SCHEMA,
        "method": method.value,
        "measure": measure.value if method is not Method.RANDOM else None,
        "diversity": diversity,
        "density": density,
        "seed": seed,
        "unlabelled": str(unlabelled.resolve()),
        "budget": budget,
        "committee": [m.record() for m in (models if method is Method.COMMITTEE else models[:1])],
        "ranked": ranked,
    }
    with staged(out) as temp:
        (temp / THUMBNAILS).mkdir()
        for row in ranked:
            pictures[order[row["rank"] - 1]].save(temp / row["thumbnail"])
        (temp / RANKING_FILE).write_text(json.dumps(ranking, indent=2) + "\n")
    return ranking


def read_ranking(path: Path) -> dict[str, Any]:
    """A `ranking.json` (or the folder holding one); a `DataError` naming the file when it is not one."""
    file = path / RANKING_FILE if path.is_dir() else path
    if not file.is_file():
        raise NotFoundError(f"no ranking at {str(file)!r}; give the ranking.json `tclearn active rank` wrote")
    try:
        ranking = json.loads(file.read_text())
        if ranking.get("schema") != RANKING_SCHEMA:
            raise ValueError(f"schema is {ranking.get('schema')!r}, not {RANKING_SCHEMA!r}")
        [(r["name"], r["sha256"], r["chosen"]) for r in ranking["ranked"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{str(file)!r} is not a ranking: {exc}", path=str(file)) from None
    return dict(ranking)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def add(ranking_path: Path, masks: Path, train: Path) -> list[str]:
    """Copy each chosen image of the ranking at `ranking_path` and its mask from `masks` into `train/images` and
    `train/masks`, and list their sha256 in `train/committee.json`: all or nothing. Returns the names added."""
    ranking = read_ranking(ranking_path)
    unlabelled = Path(ranking["unlabelled"])
    if not masks.is_dir():
        raise NotFoundError(f"masks folder {str(masks)!r} does not exist")
    if not (train / "images").is_dir() or not (train / "masks").is_dir():
        raise DataError(f"{str(train)!r} is not a segmentation training folder (images/ and masks/ sub-folders)")
    chosen = [r for r in ranking["ranked"] if r["chosen"]]
    pairs = []
    for row in chosen:
        image = unlabelled / row["name"]
        if not image.exists():
            raise NotFoundError(f"chosen image {str(image)!r} is gone from the unlabelled folder")
        if file_sha256(image) != row["sha256"]:
            raise DataError(f"chosen image {str(image)!r} changed since it was ranked (its sha256 differs); rank again")
        mask = find_mask(image, masks)
        if read_image(image).shape[1:] != read_mask(mask).shape[1:]:
            raise DataError(f"the mask {str(mask)!r} does not match the shape of its image {str(image)!r}")
        for folder, item in (("images", image), ("masks", mask)):
            taken = [p for p in (train / folder).iterdir() if stem(p) == stem(item)]
            if taken:
                raise DataError(f"{str(taken[0])!r} is already in the training folder; rename {str(item)!r}")
        pairs.append((image, mask, row["sha256"]))
    listed = read_committee(train)
    with tempfile.TemporaryDirectory(prefix=f".{train.name}.add.", dir=train.parent) as name:
        temp = Path(name)
        for image, mask, _ in pairs:
            _copy(image, temp / f"images-{image.name}")
            _copy(mask, temp / f"masks-{mask.name}")
        record = {"schema": COMMITTEE_SCHEMA, "sha256": listed + [p[2] for p in pairs if p[2] not in listed]}
        (temp / COMMITTEE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        moved: list[Path] = []
        try:
            for image, mask, _ in pairs:
                for folder, item in (("images", image), ("masks", mask)):
                    os.replace(temp / f"{folder}-{item.name}", train / folder / item.name)
                    moved.append(train / folder / item.name)
            os.replace(temp / COMMITTEE_FILE, train / COMMITTEE_FILE)
        except OSError as exc:
            for path in moved:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            raise DataError(f"cannot add to {str(train)!r}: {exc.strerror}; nothing was added") from None
    return [p[0].name for p in pairs]
