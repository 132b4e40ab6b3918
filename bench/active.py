"""Benchmark of coalitional active learning (issue 19); prints one JSON object.

The synthetic coalition (`tclearn.learning.synth`, 2-D, 3 hospitals with their skewed case mixes, scanners and
outliers). The committee is the coalition's lineage, as its increments would be, without a chain: hospital 1
trains from scratch, hospital 2 fine-tunes that model on its data, hospital 3 fine-tunes hospital 2's. Hospital 1
then holds a pool of unlabelled images and a small labelled seed set. For budgets of 5, 10 and 25 % of the pool,
each method picks images (committee: pairwise Dice disagreement of the three models' despeckled masks, smoothed,
with the diversity term; committee_entropy: their vote entropy, the default measure, same diversity;
committee_entropy_density: the same, weighted by information density (beta = 1); random; tta: the head's
disagreement under flips), and the head is fine-tuned on seed + picked (the same number of optimisation
steps whatever the set's size); Dice on hospital 1's test set. "all" fine-tunes on seed + the whole pool (100 % of
the labels). Per seed and the mean over seeds: each score over the all-labels score; the
targets: committee >= 0.99x all-labels at <= 25 %, and committee > random at every budget (on the mean). Each
budget row also says what was picked: the share of images with a finding, and of pixels that are finding.

Usage: PYTHONPATH=. python bench/active.py [--seeds 0,1,2] [--pool 160] [--seed-set 8] [--test 64] [--steps 160]
                                          [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.train import machine
from tclearn.learning.active import MEASURES, descriptor, random_scores, select, tta_maps
from tclearn.learning.choices import Measure
from tclearn.learning.data import ImageData, Task
from tclearn.learning.defaults import SIMULATION_LOSS
from tclearn.learning.evaluate import evaluate, probabilities
from tclearn.learning.inference import infer
from tclearn.learning.models import build_model
from tclearn.learning.synth import draw_case, profile_for, to_png
from tclearn.learning.train import TrainConfig, train_increment

MODEL = {"arch": "unet", "options": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}}
SIZE = 64
BATCH = 8
LR = 3e-3
BUDGETS = (0.05, 0.10, 0.25)
DIVERSITY = 0.3
DENSITY = 1.0  # Settles & Craven's beta, fixed before the run
# committee: pairwise (smoothed) Dice disagreement; committee_entropy: vote entropy (the default measure);
# committee_entropy_density: vote entropy x information density ** DENSITY
METHODS = ("committee", "committee_entropy", "committee_entropy_density", "random", "tta")
HOSPITAL_TRAIN = 32  # labelled cases of each hospital for the committee's lineage


def cases(hospital: int, count: int, seed: int, stream: int) -> ImageData:
    """`count` synthetic cases of `hospital` (0-based), as the 8-bit PNGs `tclearn data synth` writes read them."""
    rng = np.random.default_rng([seed, hospital, stream])
    profile = profile_for(hospital, seed)
    images, masks = [], []
    for _ in range(count):
        stored, mask = draw_case(profile, (SIZE, SIZE), rng)
        images.append(to_png(stored)[None].astype(np.float32) / 255.0)
        masks.append(mask[None].astype(np.float32))
    names = tuple(f"h{hospital + 1}-{stream}-{k:04d}" for k in range(count))
    return ImageData(Task.SEGMENTATION, torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), names)


def joined(*parts: ImageData) -> ImageData:
    return ImageData(
        Task.SEGMENTATION,
        torch.cat([p.images for p in parts]),
        torch.cat([p.targets for p in parts]),
        tuple(n for p in parts for n in p.names),
    )


def fine_tune(parent: nn.Module, data: ImageData, steps: int, seed: int) -> nn.Module:
    """`parent` trained on `data` for about `steps` steps of batch `BATCH` (whole epochs, at least one)."""
    epochs = max(1, math.ceil(steps / max(1, len(data) // BATCH)))
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, loss=SIMULATION_LOSS, seed=seed, device="cpu")  # type: ignore[arg-type]
    child = build_model(MODEL)
    child.load_state_dict(train_increment(parent, data, config).weights)
    return child


def maps_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return probabilities(infer(model, x, device="cpu"))


def scores(method: str, committee: list[nn.Module], pool: ImageData, seed: int) -> list[float]:
    """Each pool image's score by `method` (higher: more worth labelling)."""
    if method == "random":
        return [float(s) for s in random_scores(len(pool), seed)]
    out = []
    for k in range(len(pool)):
        x = pool.images[k : k + 1]
        if method.startswith("committee"):
            maps = torch.cat([maps_of(m, x) for m in committee])
        else:  # tta: the head alone, under flips
            maps = tta_maps(lambda b: maps_of(committee[-1], b), x)
        measure = Measure.ENTROPY if method.startswith("committee_entropy") else Measure.DICE
        out.append(MEASURES[measure](maps))
    return out


def one_seed(seed: int, pool_size: int, seed_size: int, test_size: int, steps: int) -> dict[str, Any]:
    started = time.perf_counter()
    torch.manual_seed(seed)
    model: nn.Module = build_model(MODEL)
    committee = []
    for hospital in range(3):  # the lineage: each hospital fine-tunes the previous model on its own cases
        model = fine_tune(model, cases(hospital, HOSPITAL_TRAIN, seed, 0), steps * 2, seed)
        committee.append(model)
    head = committee[-1]
    labelled = cases(0, seed_size, seed, 1)
    pool = cases(0, pool_size, seed, 2)
    test = cases(0, test_size, seed, 3)
    descriptors = np.stack([descriptor(pool.images[k]) for k in range(len(pool))])

    def score_with(extra: list[int]) -> float:
        data = joined(labelled, pool.subset(extra)) if extra else labelled
        return float(evaluate(fine_tune(head, data, steps, seed), data=test, device="cpu").score)

    everything = score_with(list(range(len(pool))))
    result: dict[str, Any] = {
        "seed": seed,
        "head_dice": float(evaluate(head, test, device="cpu").score),
        "seed_set_dice": score_with([]),
        "all_labels_dice": everything,
        "pool_positive_share": float((pool.targets.flatten(1).amax(dim=1) > 0).float().mean()),
        "pool_finding_pixels": float(pool.targets.mean()),
        "methods": {},
    }
    for method in METHODS:
        ranked = scores(method, committee, pool, seed)
        committee_run = method.startswith("committee")
        order = select(
            ranked,
            descriptors,
            DIVERSITY if committee_run else 0.0,
            DENSITY if method == "committee_entropy_density" else 0.0,
        )
        rows = {}
        for budget in BUDGETS:
            picked = order[: max(1, round(budget * len(pool)))]
            dice = score_with(picked)
            truth = pool.targets[picked]
            rows[f"{round(budget * 100)}%"] = {
                "picked": len(picked),
                "dice": dice,
                "ratio": dice / everything,
                # what was picked: the share of images with a finding, and of pixels that are finding
                "positive_share": float((truth.flatten(1).amax(dim=1) > 0).float().mean()),
                "finding_pixels": float(truth.mean()),
            }
        result["methods"][method] = rows
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of each method's ratio to all labels, and the targets."""
    budgets = list(runs[0]["methods"]["committee"])
    mean = {
        method: {b: float(np.mean([r["methods"][method][b]["ratio"] for r in runs])) for b in budgets}
        for method in runs[0]["methods"]
    }
    return {
        "mean_ratio": mean,
        "mean_all_labels_dice": float(np.mean([r["all_labels_dice"] for r in runs])),
        "committee_reaches_0.99_at_25%_or_less": any(mean["committee"][b] >= 0.99 for b in budgets),
        "committee_beats_random_at_every_budget": all(mean["committee"][b] > mean["random"][b] for b in budgets),
        "committee_beats_tta_at_every_budget": all(mean["committee"][b] > mean["tta"][b] for b in budgets),
        "committee_entropy_reaches_0.99_at_25%_or_less": any(mean["committee_entropy"][b] >= 0.99 for b in budgets),
        "committee_entropy_beats_random_at_every_budget": all(
            mean["committee_entropy"][b] > mean["random"][b] for b in budgets
        ),
        "committee_entropy_density_reaches_0.99_at_25%_or_less": any(
            mean["committee_entropy_density"][b] >= 0.99 for b in budgets
        ),
        "committee_entropy_density_beats_random_at_every_budget": all(
            mean["committee_entropy_density"][b] > mean["random"][b] for b in budgets
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pool", type=int, default=160)
    parser.add_argument("--seed-set", type=int, default=8)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [one_seed(s, args.pool, args.seed_set, args.test, args.steps) for s in seeds]
    report = {
        "machine": machine(args.threads, SIZE, MODEL, BATCH),
        "setup": {
            "pool": args.pool,
            "seed_set": args.seed_set,
            "test": args.test,
            "steps": args.steps,
            "lr": LR,
            "diversity": DIVERSITY,
            "density": DENSITY,
            "measure": "dice, smoothed (committee_entropy, committee_entropy_density: vote entropy; tta: dice)",
        },
        "runs": runs,
        "summary": summary(runs),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
