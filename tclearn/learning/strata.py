"""Strata of a data set: the groups of its samples a validator scores a model on besides the whole set.

Pure functions of the targets, so that every validator forms the same strata of G:

- **segmentation**: each image by its *smallest* finding (connected component of its mask) as a fraction of the
  image's pixels (voxels): `finding:none`, `finding:small` (below `SMALL_FINDING`), `finding:medium` (below
  `MEDIUM_FINDING`), `finding:large`; scored by the mean per-image Dice of the stratum's images;
- **classification**: `class:<name>`, the samples of each class; scored by the accuracy within the class (its
  recall);
- **multi-label**: `label:<name>`, each label with both a positive and a negative case; scored by that label's
  AUC on the whole set, its `samples` being its rarer case (what an AUC rests on).

An increment that keeps the mean but stops finding small lesions, or gives up one class, shows here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

# A finding under 0.6 % of the image is a small lesion (under 25 pixels of a 64x64 picture), under 2 % a medium
# one (under 82 pixels). These split the demo's G (48 synthetic 64x64 images, seeds 0-2) into none 10-12, small
# 12-14, medium 9-13, large 11-14 images: every stratum holds the policy's `min_stratum` 8, so every one is
# judged. The rounder 1 % / 4 % left 5-10 images with a large finding (unjudged on two seeds of three).
SMALL_FINDING = 0.006
MEDIUM_FINDING = 0.02
FINDING_STRATA = ("finding:none", "finding:small", "finding:medium", "finding:large")


@dataclass(frozen=True)
class StratumScore:
    """A model's score on one stratum of one set: its name, how many samples it rests on, the score."""

    name: str
    samples: int
    score: float


@dataclass(frozen=True)
class Scored:
    """A model's headline score on a set, and its score on each stratum of that set (in a fixed order)."""

    score: float
    strata: tuple[StratumScore, ...] = ()


def finding_stratum(mask: np.ndarray | torch.Tensor) -> str:
    """The stratum of one image by its mask (`(1, *spatial)` or `(*spatial)`, foreground > 0.5): its smallest
    finding's size as a fraction of the image."""
    array = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask) > 0.5
    labels, count = ndimage.label(array[0] if array.ndim > 2 and array.shape[0] == 1 else array)
    if count == 0:
        return FINDING_STRATA[0]
    smallest = int(np.bincount(labels.ravel())[1:].min()) / labels.size
    if smallest < SMALL_FINDING:
        return FINDING_STRATA[1]
    return FINDING_STRATA[2] if smallest < MEDIUM_FINDING else FINDING_STRATA[3]


def finding_strata(masks: torch.Tensor) -> list[str]:
    """The stratum of each image of a batch of masks `(N, 1, *spatial)`."""
    return [finding_stratum(mask) for mask in masks]


def class_names(classes: Sequence[str], count: int) -> tuple[str, ...]:
    """`class:<name>` of each of `count` classes (`class:<index>` where the set names none)."""
    names = classes if len(classes) >= count else [str(i) for i in range(count)]
    return tuple(f"class:{name}" for name in names[:count])


def class_strata(targets: torch.Tensor, classes: Sequence[str]) -> list[str]:
    """The stratum of each sample of class indices `(N,)`."""
    indices = [int(t) for t in targets.reshape(-1)]
    names = class_names(classes, max([len(classes), *(i + 1 for i in indices)]))
    return [names[i] for i in indices]


def members(strata: Sequence[str], order: Sequence[str]) -> dict[str, list[int]]:
    """The indices of each stratum's samples (`strata[i]` is sample `i`'s), in `order`, then any others by
    name; strata without samples left out."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(strata):
        groups[name].append(index)
    ranked = [name for name in order if name in groups] + sorted(set(groups) - set(order))
    return {name: groups[name] for name in ranked}


def mean_by_stratum(strata: Sequence[str], values: Sequence[float], order: Sequence[str]) -> tuple[StratumScore, ...]:
    """Per stratum, the mean of its samples' values (`strata[i]`, `values[i]`: sample `i`'s), in `order`."""
    if len(strata) != len(values):
        raise ValueError(f"{len(strata)} strata for {len(values)} values")
    return tuple(
        StratumScore(name, len(indices), sum(float(values[i]) for i in indices) / len(indices))
        for name, indices in members(strata, order).items()
    )


def weighted_mean(strata: Sequence[StratumScore]) -> float:
    """The score of the whole set from the scores of strata that partition it (mean over samples)."""
    total = sum(s.samples for s in strata)
    if not total:
        raise ValueError("no samples in any stratum")
    return sum(s.samples * s.score for s in strata) / total


def label_strata(truth: torch.Tensor, labels: Sequence[str], aucs: Mapping[str, float]) -> tuple[StratumScore, ...]:
    """`label:<name>` for each label of `truth` `(N, K)` with both cases, scored by its AUC in `aucs` (label ->
    AUC); its samples are its rarer case."""
    strata = []
    for k, label in enumerate(labels):
        positives = int((truth[:, k] == 1).sum())
        rarer = min(positives, len(truth) - positives)
        if rarer:
            strata.append(StratumScore(f"label:{label}", rarer, float(aucs[label])))
    return tuple(strata)


def zeroed(strata: Sequence[StratumScore]) -> tuple[StratumScore, ...]:
    """The same strata scored 0 (a model that outputs NaN or infinity)."""
    return tuple(StratumScore(s.name, s.samples, 0.0) for s in strata)
