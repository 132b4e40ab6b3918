"""Coalitional active learning, the maths: how much a committee (or one model) disagrees on an image, and which
images are worth an expert's time.

A committee is K models' probability maps for one image, stacked `(K, *rest)`: segmentation `(K, 1, *spatial)`
(the foreground probability), classification `(K, C)` (class probabilities). Each model votes (`votes`): a mask
thresholded at 0.5 without its specks (components smaller than `MIN_FINDING_AREA`, as `predict` and `evaluate`
drop them: a vote is what the model's prediction would be), or the one-hot of its most probable class. Two
measures of their disagreement, both in [0, 1]:

- `pairwise_dice_disagreement`: 1 - the mean over model pairs of the smoothed Dice between their masks
  (`smoothed_dice`: two empty masks agree, a small finding against nothing disagrees little); for classes the
  share of pairs that vote differently;
- `vote_entropy`: the entropy of the vote fraction, over log(2) per voxel (segmentation, averaged over voxels),
  over log(C) for C classes.

One model's uncertainty is the same measures over its own maps: under flips of the input (`tta_maps`, test-time
augmentation) or under dropout left on (`dropout_maps`, for networks that have dropout). `select` ranks a pool
greedily by score, weighted by the image's `density` (its mean similarity to the rest of the pool, to the power
`density`: information density, so outliers do not come first), minus `diversity` x the largest cosine similarity
to an image already picked (of `descriptor`s: the image downsampled to 16 pixels a side, centred), so
near-duplicates are not all picked.
`committee_chosen` counts the images of a training folder that the loop added from a ranking (`committee.json`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from tclearn.errors import ConfigError, DataError
from tclearn.learning.choices import Measure
from tclearn.learning.data import is_image
from tclearn.learning.defaults import MIN_FINDING_AREA
from tclearn.learning.evaluate import drop_specks, probabilities

COMMITTEE_FILE = "committee.json"
COMMITTEE_SCHEMA = "tclearn.committee/1"
DESCRIPTOR_EDGE = 16
DROPOUT_RUNS = 8


def votes(maps: torch.Tensor, min_area: int = MIN_FINDING_AREA) -> torch.Tensor:
    """Each model's vote, boolean: `(K, 1, *spatial)` probabilities above 0.5 without the connected components
    smaller than `min_area` (`drop_specks`), or `(K, C)` the one-hot argmax."""
    if maps.dim() == 2:
        return functional.one_hot(maps.argmax(dim=1), maps.shape[1]).bool()
    return drop_specks((maps.detach().cpu() > 0.5).float(), min_area).bool()


def smoothed_dice(a: torch.Tensor, b: torch.Tensor, smoothing: float = MIN_FINDING_AREA) -> float:
    """(2|a & b| + s) / (|a| + |b| + s) of two boolean masks, s = `smoothing` (> 0), in (0, 1].

    s is the size of the smallest finding a prediction keeps (`MIN_FINDING_AREA` pixels, voxels in 3-D): two empty
    masks agree (Dice 1), a finding of that size against nothing scores 1/2, and one of n >> s pixels against
    nothing or against a disjoint one scores near 0, so the disagreement grows with the size of what is in dispute
    rather than jumping to its maximum for a few pixels."""
    if not smoothing > 0:
        raise ConfigError(f"the Dice smoothing must be above 0, got {smoothing!r}")
    overlap = float((a & b).sum())
    return (2.0 * overlap + smoothing) / (float(a.sum()) + float(b.sum()) + smoothing)


def pairwise_dice_disagreement(maps: torch.Tensor, smoothing: float = MIN_FINDING_AREA) -> float:
    """1 - the mean over the model pairs of `maps` `(K, ...)`, K >= 2, of the `smoothed_dice` of their votes;
    classification `(K, C)`: the share of pairs whose votes differ."""
    if maps.shape[0] < 2:
        raise ConfigError(f"a disagreement needs at least two maps, got {maps.shape[0]}")
    flat = votes(maps).reshape(maps.shape[0], -1)
    pairs = list(itertools.combinations(range(flat.shape[0]), 2))
    if maps.dim() == 2:
        return sum(not torch.equal(flat[i], flat[j]) for i, j in pairs) / len(pairs)
    return 1.0 - sum(smoothed_dice(flat[i], flat[j], smoothing) for i, j in pairs) / len(pairs)


def voxel_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Per-voxel vote entropy of segmentation maps `(K, 1, *spatial)`, in [0, 1] (bits): `(*spatial)`."""
    p = votes(maps).float().mean(dim=0)[0]
    h = -(p * torch.log2(p.clamp_min(1e-12)) + (1 - p) * torch.log2((1 - p).clamp_min(1e-12)))
    return h.clamp(0.0, 1.0)


def vote_entropy(maps: torch.Tensor) -> float:
    """The entropy of the committee's votes in [0, 1]: segmentation, the mean over voxels of `voxel_entropy`;
    classification `(K, C)`, the entropy of the class vote fractions over log(C)."""
    if maps.dim() == 2:
        fractions = votes(maps).float().mean(dim=0)
        kept = fractions[fractions > 0]
        return float(-(kept * kept.log()).sum() / math.log(maps.shape[1])) if maps.shape[1] > 1 else 0.0
    return float(voxel_entropy(maps).mean())


MEASURES: dict[Measure, Callable[[torch.Tensor], float]] = {
    Measure.DICE: pairwise_dice_disagreement,
    Measure.ENTROPY: vote_entropy,
}


def flips(spatial_dims: int) -> list[tuple[int, ...]]:
    """The flips test-time augmentation applies to a batch `(N, C, *spatial)`: none, then each spatial axis."""
    return [(), *((2 + axis,) for axis in range(spatial_dims))]


def tta_maps(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`predict`'s probability maps for one image `x` `(1, C, *spatial)` under each of `flips`, flipped back:
    `(F, 1, *spatial)`; classification `(F, C)`."""
    out = []
    for axes in flips(x.dim() - 2):
        maps = predict(x.flip(axes) if axes else x)
        out.append(maps.flip(axes) if axes and maps.dim() == x.dim() else maps)
    return torch.cat(out)


def has_dropout(model: nn.Module) -> bool:
    """Whether `model` holds a dropout layer with a rate above zero."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


@torch.no_grad()
def dropout_maps(model: nn.Module, x: torch.Tensor, runs: int = DROPOUT_RUNS) -> torch.Tensor:
    """`runs` probability maps of `x` `(1, ...)` from `model` in eval mode but with its dropout layers on (Monte
    Carlo dropout), stacked; a `ConfigError` for a network without dropout. One plain forward pass each: the
    networks with dropout here are classifiers, which need no padding or windows."""
    if not has_dropout(model):
        raise ConfigError(
            "the model has no dropout layer, so dropout uncertainty is not offered; use --method tta or committee"
        )
    was_training = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()
    try:
        return torch.cat([probabilities(model(x).float()) for _ in range(runs)])
    finally:
        model.train(was_training)


def random_scores(count: int, seed: int) -> np.ndarray:
    """`count` scores drawn uniformly in [0, 1) by `seed`: the random baseline's order."""
    return np.random.default_rng(seed).random(count)


def descriptor(image: torch.Tensor, edge: int = DESCRIPTOR_EDGE) -> np.ndarray:
    """What an image `(C, *spatial)` looks like, small: its channel mean downsampled to `edge` a side, centred
    (so cosine similarity is the correlation of the two pictures)."""
    grey = image.float().mean(dim=0, keepdim=True)[None]
    pool = functional.adaptive_avg_pool2d if grey.dim() == 4 else functional.adaptive_avg_pool3d
    small = pool(grey, edge).flatten().numpy().astype(np.float64)
    return small - small.mean()


def cosine(descriptors: np.ndarray) -> np.ndarray:
    """The cosine similarity of every pair of rows of `descriptors` `(N, D)` (a constant row: 0 to all others)."""
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    unit = np.divide(descriptors, norms, out=np.zeros_like(descriptors), where=norms > 0)
    return unit @ unit.T


def density(descriptors: np.ndarray) -> np.ndarray:
    """How typical each row of `descriptors` `(N, D)` is of the pool, in [0, 1]: the mean over the other rows of
    (1 + cosine) / 2, the cosine similarity mapped onto [0, 1] (1 alike, 1/2 unrelated, 0 opposite); 1 for a
    pool of one. Settles & Craven's (2008) information density, for centred descriptors."""
    count = len(descriptors)
    if count < 2:
        return np.ones(count)
    similar = (1.0 + cosine(descriptors)) / 2.0
    return (similar.sum(axis=1) - np.diag(similar)) / (count - 1)


def scaled(values: np.ndarray) -> np.ndarray:
    """`values` mapped linearly onto [0, 1] (all zeros when they are all equal)."""
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _check_weight(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def select(scores: Sequence[float], descriptors: np.ndarray, diversity: float, density_power: float = 0.0) -> list[int]:
    """Every index of `scores`, in the order picked: greedily the largest worth minus `diversity` x its largest
    cosine similarity to an index already picked; ties go to the lower index. The worth is the score scaled to
    [0, 1] over the pool times its `density` to the power `density_power` (0: the score alone), scaled again to
    [0, 1] so that `diversity` weighs the same whatever the power."""
    _check_weight("diversity", diversity)
    _check_weight("the density exponent", density_power)
    values = np.asarray(scores, dtype=np.float64)
    if len(values) != len(descriptors):
        raise DataError(f"{len(values)} scores for {len(descriptors)} descriptors")
    worth = scaled(values)
    if density_power > 0:
        worth = scaled(worth * density(descriptors) ** density_power)
    similar = cosine(descriptors) if diversity > 0 else np.zeros((len(values), len(values)))
    closest = np.zeros(len(values))  # an image unlike every pick (or opposite to one) pays nothing
    left = np.ones(len(values), dtype=bool)
    order: list[int] = []
    for _ in range(len(values)):
        gain = np.where(left, worth - diversity * closest, -np.inf)
        pick = int(np.argmax(gain))
        order.append(pick)
        left[pick] = False
        closest = np.maximum(closest, similar[pick])
    return order


def file_sha256(path: Path) -> str:
    """The sha256 of an image file; of a series folder, that of its files' names and sha256s in name order."""
    if path.is_dir():
        digest = hashlib.sha256()
        for part in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{part.relative_to(path).as_posix()}\0{file_sha256(part)}\n".encode())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_committee(root: Path) -> list[str]:
    """The sha256s `root/committee.json` lists (none when the file is absent); a `DataError` for a bad file."""
    path = root / COMMITTEE_FILE
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
        listed = record["sha256"]
        if record.get("schema") != COMMITTEE_SCHEMA or not all(isinstance(s, str) for s in listed):
            raise ValueError(f"expected schema {COMMITTEE_SCHEMA!r} and a list of sha256 strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}; restore it or remove it", path=str(path)) from None
    return list(listed)


def committee_chosen(root: Path) -> int:
    """How many images of the training folder `root` (`root/images/*`, or `root/<class>/*`) the committee chose:
    those whose sha256 `root/committee.json` lists."""
    listed = set(read_committee(root))
    if not listed:
        return 0
    folders = [root / "images"] if (root / "images").is_dir() else sorted(p for p in root.iterdir() if p.is_dir())
    return sum(file_sha256(f) in listed for folder in folders for f in folder.iterdir() if is_image(f))
