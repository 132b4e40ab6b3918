"""Benchmark of differential privacy in training; prints one JSON object.

- throughput: samples/s of `train_increment` with DP-SGD beside the same call without DP, on the demo network
  (UNet 2-D, channels [16, 32, 64], strides [2, 2]), Dice loss, batch 8 (DP: Poisson batches of expected size 8),
  same data, threads and steps, in the same run (interleaved, best of repeats); DP twice: per-sample gradients by
  `torch.func.vmap` over the whole network (the default) and by Opacus's per-layer hooks (`GradSampleModule`).
  Target: DP >= 0.5x non-private. Each DP increment also pays once for its accountant (`accounting_s`, within
  the DP figures): 8 epochs of 32 images, the demo's increment, spread it over 32 steps.

Usage: PYTHONPATH=. python bench/dp.py [--threads 1] [--repeats 3] [--epochs 8] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.defaults import COALITION_TRAINING
from tclearn.learning.models import build_model
from tclearn.learning.privacy import DPConfig, Mechanism, PerSample, epsilon_spent, poisson_steps
from tclearn.learning.synth import synth_coalition
from tclearn.learning.train import TrainConfig, train_increment

MODEL = {"arch": "unet", "options": {"channels": [16, 32, 64], "strides": [2, 2]}}
BATCH = 8


def bench_throughput(data: ImageData, epochs: int, repeats: int) -> dict[str, Any]:
    """Samples/s of non-private and DP increments (the same number of steps of the same expected batch)."""
    plain = TrainConfig(epochs=epochs, batch_size=BATCH, loss="dice", seed=0)  # type: ignore[arg-type]
    runs: dict[str, TrainConfig] = {"non_private": plain}
    for per_sample in PerSample:
        dp = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, per_sample=per_sample)
        runs[f"dp_{per_sample.value}"] = TrainConfig(
            epochs=epochs,
            batch_size=BATCH,
            loss="dice",  # type: ignore[arg-type]
            seed=0,
            dp=dp,
        )
    parent = build_model(MODEL)
    jobs: dict[str, Callable[[], int]] = {
        name: (lambda c=config: train_increment(parent, data, c).facts.steps) for name, config in runs.items()
    }
    for job in jobs.values():  # warm-up: allocator, vmap tracing, Opacus hooks
        job()
    best = dict.fromkeys(jobs, float("inf"))
    steps = dict.fromkeys(jobs, 0)
    for _ in range(repeats):
        for name, job in jobs.items():
            started = time.perf_counter()
            steps[name] = job()
            best[name] = min(best[name], time.perf_counter() - started)
    rate = {name: steps[name] * BATCH / best[name] for name in jobs}
    started = time.perf_counter()
    epsilon = epsilon_spent(Mechanism(1.0, *poisson_steps(BATCH, len(data), epochs)), 1e-5)
    accounting_s = time.perf_counter() - started
    return {
        "samples_per_s": {name: round(r, 2) for name, r in rate.items()},
        "steps": steps,
        "ratio_dp_vmap": round(rate["dp_vmap"] / rate["non_private"], 3),
        "ratio_dp_hooks": round(rate["dp_hooks"] / rate["non_private"], 3),
        "target_ratio": 0.5,
        "accounting_s": round(accounting_s, 3),
        "epsilon_at_1e-5": round(epsilon, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=COALITION_TRAINING.epochs)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth_coalition(root, hospitals=1, train=32, test=4, global_size=4, size=args.size)
        data = load_segmentation(root / "hospital-1" / "train")
        report = {
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "threads": args.threads,
            "torch": torch.__version__,
            "model": MODEL,
            "image_size": args.size,
            "batch_size": BATCH,
            "throughput": bench_throughput(data, args.epochs, args.repeats),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
