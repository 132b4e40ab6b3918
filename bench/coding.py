"""Benchmark of JPEG 2000 image coding for learning; prints one JSON object.

Synthetic CT slices as a scanner stores them (`tclearn.learning.synth`: int16 Hounsfield units, drawn from the
first three hospitals' case mixes and scanners in equal parts). Two modes:

- `--mode native` (default, the real pipeline; bench/coding_native.py): slices drawn, stored and coded at
  512 x 512, then resized to the model's 128 x 128 (bilinear, antialiased; masks nearest from the uncoded truth).
  The augmentation codes half of the training slices as they are read (fresh draws each epoch) at 512 x 512.
- `--mode model`: slices drawn and coded at the model's 128 x 128 (a 64:1 slice is then 512 bytes).

The model is the default U-Net (8-16-32, as bench/train.py) behind a soft-tissue
window (the window is part of the model, so the images coded are the stored HU, as an archive codes them), trained
with Adam and the default Dice + cross-entropy loss. Per seed, two models
are trained on the same training set with the same seed: one plain, one with the `j2k:64` augmentation (half
of the items coded at a ratio log-uniform in [1, 64] as they are read). Each is scored (Dice) on the test set
as stored and at each ratio (`tclearn.learning.robustness`: every plane coded and decoded).

- dice_loss_points: the plain model's Dice at 20:1 below its Dice as stored (target <= 1 point) and the
  augmented model's at 64:1 (target <= 1 point), each seed and their mean;
- decode: slices/s decoding one 512 x 512 int16 CT slice (lossless, 10:1, 20:1, 64:1) on one core
  (openjpeg decodes on one thread; torch threads set to 1), median of repeats. Target >= 50.

Usage: PYTHONPATH=. python bench/coding.py [--mode native|model] [--seeds 0,1,2] [--threads 2] [--epochs 30]
[--train 96] [--lr 0.01]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.coding_native import augmented_native, coded, native_scores, native_slices
from bench.train import machine
from tclearn.learning.coding import decode, encode
from tclearn.learning.data import ImageData, Task
from tclearn.learning.models import build_model
from tclearn.learning.robustness import robustness
from tclearn.learning.samples import Samples
from tclearn.learning.synth import WINDOW_HU, draw_case, profile_for, to_int16
from tclearn.learning.train import TrainConfig, train_increment

MODEL = {"arch": "unet"}  # the default U-Net (8-16-32), as bench/train.py
SIZE, TEST, BATCH = 128, 48, 8
RATIOS = (1.0, 10.0, 20.0, 40.0, 64.0)
AUGMENT = "j2k:64"
MAX_RATIO = 64.0


class Window(nn.Module):
    """HU to [0, 1] through the soft-tissue window, inside the model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = WINDOW_HU
        return ((x - low) / (high - low)).clamp(0.0, 1.0)


def network() -> nn.Module:
    return nn.Sequential(Window(), build_model(MODEL))


def ct_slices(count: int, seed: int, split: int) -> ImageData:
    """`count` 2-D CT slices (int16 HU values, float32) with their masks, the first three hospitals in turn."""
    rng = np.random.default_rng([seed, split])
    images, masks = [], []
    for k in range(count):
        stored, mask = draw_case(profile_for(k % 3, seed), (SIZE, SIZE), rng)
        images.append(to_int16(stored).astype(np.float32)[np.newaxis])
        masks.append(mask.astype(np.float32)[np.newaxis])
    return ImageData(
        Task.SEGMENTATION,
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.stack(masks)),
        tuple(f"case-{split}-{k:04d}" for k in range(count)),
    )


def trained(data: Samples, seed: int, epochs: int, lr: float, augment: tuple[str, ...]) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    parent = network()
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=lr, seed=seed, augment=augment)
    started = time.perf_counter()
    parent.load_state_dict(train_increment(parent, data, config).weights)
    return parent, time.perf_counter() - started


def scores(model: nn.Module, test: ImageData) -> dict[str, Any]:
    report = robustness(model, test, RATIOS)
    return {
        "as_stored": round(report.baseline.score, 4),
        "by_ratio": {f"{r.ratio:g}": round(r.score, 4) for r in report.ratios},
        "achieved_ratio": {f"{r.ratio:g}": r.achieved_ratio for r in report.ratios},
    }


def timed(plain_s: float, augmented_s: float) -> dict[str, Any]:
    return {"plain": round(plain_s, 1), "augmented": round(augmented_s, 1)}


def run_model_size(seed: int, train_count: int, epochs: int, lr: float) -> tuple[dict[str, Any], ...]:
    """Plain and `j2k:64` models on slices drawn and coded at 128 x 128: their scores and training seconds."""
    train, test = ct_slices(train_count, seed, 0), ct_slices(TEST, seed, 1)
    plain, plain_s = trained(train, seed, epochs, lr, ())
    augmented, augmented_s = trained(train, seed, epochs, lr, (AUGMENT,))
    return scores(plain, test), scores(augmented, test), timed(plain_s, augmented_s)


def run_native(seed: int, train_count: int, epochs: int, lr: float) -> tuple[dict[str, Any], ...]:
    """Plain and augmented models on slices stored and coded at 512 x 512, seen at 128 x 128."""
    train, test = native_slices(train_count, seed, 0, SIZE), native_slices(TEST, seed, 1, SIZE)
    plain, plain_s = trained(coded(train, None)[0], seed, epochs, lr, ())
    augmented, augmented_s = trained(augmented_native(train, MAX_RATIO, seed), seed, epochs, lr, ())
    shown = native_scores(plain, test, RATIOS), native_scores(augmented, test, RATIOS)
    return *shown, timed(plain_s, augmented_s)


def loss_points(result: dict[str, Any], ratio: float) -> float:
    return round(100 * (result["as_stored"] - result["by_ratio"][f"{ratio:g}"]), 2)


def decode_speed(repeats: int) -> dict[str, float]:
    """Slices/s decoding a 512 x 512 int16 CT slice, per ratio (1: lossless)."""
    stored, _ = draw_case(profile_for(0), (512, 512), np.random.default_rng(7))
    picture = to_int16(stored)
    speeds = {}
    for ratio in (1.0, 10.0, 20.0, 64.0):
        data = encode(picture, ratio)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(10):
                decode(data, "bench")
            times.append((time.perf_counter() - start) / 10)
        speeds[f"{ratio:g}"] = round(1.0 / statistics.median(times), 1)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("native", "model"), default="native")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    torch.set_num_threads(1)
    speeds = decode_speed(args.repeats)
    torch.set_num_threads(args.threads)
    runs: dict[str, Any] = {}
    for seed in seeds:
        run = run_native if args.mode == "native" else run_model_size
        plain_scores, augmented_scores, seconds = run(seed, args.train, args.epochs, args.lr)
        shown = f"plain {plain_scores['by_ratio']}, augmented {augmented_scores['by_ratio']}"
        print(f"seed {seed}: {shown}", file=sys.stderr)
        runs[str(seed)] = {
            "plain": plain_scores,
            "augmented": augmented_scores,
            "train_seconds": seconds,
            "plain_loss_points_at_20": loss_points(plain_scores, 20.0),
            "augmented_loss_points_at_64": loss_points(augmented_scores, 64.0),
        }
    mean = {
        key: round(statistics.mean(run[key] for run in runs.values()), 2)
        for key in ("plain_loss_points_at_20", "augmented_loss_points_at_64")
    }
    for kind in ("plain", "augmented"):
        mean[f"{kind}_dice_by_ratio"] = {  # type: ignore[assignment]
            f"{r:g}": round(statistics.mean(run[kind]["by_ratio"][f"{r:g}"] for run in runs.values()), 4)
            for r in RATIOS
        }
        mean[f"{kind}_dice_as_stored"] = round(statistics.mean(run[kind]["as_stored"] for run in runs.values()), 4)
    report = {
        **machine(args.threads, SIZE, MODEL, BATCH),
        "mode": args.mode,
        "coded_at": "512 x 512, resized to 128 x 128" if args.mode == "native" else f"{SIZE} x {SIZE}",
        "data": {"train": args.train, "test": TEST, "stored": "int16 HU", "epochs": args.epochs, "lr": args.lr},
        "augment": AUGMENT if args.mode == "model" else "j2k:64 at 512 x 512, fresh draw per read",
        "seeds": runs,
        "mean": mean,
        "targets": {
            "plain_loss_points_at_20": {"target": 1.0, "met": mean["plain_loss_points_at_20"] <= 1.0},
            "augmented_loss_points_at_64": {"target": 1.0, "met": mean["augmented_loss_points_at_64"] <= 1.0},
            "decode_slices_per_s_512_int16": {"target": 50.0, "met": min(speeds.values()) >= 50.0},
        },
        "decode_slices_per_s_512_int16_one_core": speeds,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
