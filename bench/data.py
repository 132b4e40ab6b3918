"""Benchmark of the disk-backed data path for 3-D volumes; prints one JSON object.

- memory: peak RSS of one training increment (3-D U-Net, random patches) over 50 and over 200 CT volumes of
  96^3 read through `FileSamples`, each count in a fresh process; the target is growth <= 10 % from 50 to 200
  (the cache holds at most `--cache-mib`, the rest is read from disk when used);
- throughput: volumes/s of `train_increment` through `FileSamples` (MONAI `CacheDataset` + `DataLoader`) beside
  a plain loop over the same volumes preloaded as tensors, same model, steps, batches and threads, in the same
  run (interleaved, best of repeats); the target is a ratio >= 0.9.

Usage: PYTHONPATH=. python bench/data.py [--threads 2] [--side 96] [--counts 50,200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bench.train import plain_tensor_loop
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.learning.volumes import DEFAULT_CACHE_BYTES, Intensity, segmentation_samples

MODEL = ModelConfig(arch="unet", spatial_dims=3, options={"channels": [8, 16, 32], "strides": [2, 2]})
CT = Intensity("ct", (-100.0, 200.0))
BATCH = 2


def write_volumes(root: Path, count: int, side: int, seed: int = 0) -> Path:
    """`count` CT volumes (int16 HU) with one spherical finding each, and their masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    grid = np.indices((side,) * 3, dtype=np.int16)
    for k in range(count):
        centre = rng.integers(side // 4, 3 * side // 4, size=3)
        radius = int(rng.integers(3, side // 8))
        blob = ((grid - centre[:, None, None, None].astype(np.int16)) ** 2).sum(0) <= radius**2
        image = (40 + rng.normal(0, 10, (side,) * 3)).astype(np.int16)
        image[blob] += 50
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "images" / f"ct{k:04d}.nii.gz")
        nib.save(nib.Nifti1Image(blob.astype(np.uint8), np.eye(4)), root / "masks" / f"ct{k:04d}.nii.gz")
    return root


def one_increment(root: Path, count: int, patch: int, cache_bytes: int) -> dict[str, float]:
    """Train one increment over the first `count` volumes; runs in its own process (for its peak RSS)."""
    data = segmentation_samples(root, CT, cache_bytes)
    data = data.subset(range(count))
    started = time.perf_counter()
    train_increment(build_model(MODEL), data, TrainConfig(epochs=1, batch_size=BATCH, patch=(patch,) * 3))
    return {
        "volumes": count,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def throughput(root: Path, epochs: int, repeats: int) -> dict[str, float]:
    data = segmentation_samples(root, CT)
    pairs = [data.dataset()[i] for i in range(len(data))]
    images = torch.stack([x for x, _ in pairs])
    masks = torch.stack([y for _, y in pairs]).float()
    config = TrainConfig(epochs=epochs, batch_size=BATCH)
    loader_s, plain_s = [], []
    for r in range(repeats):
        fresh = segmentation_samples(root, CT)  # a cold cache: the first epoch reads every volume from disk
        started = time.perf_counter()
        train_increment(build_model(MODEL), fresh, config)
        loader_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain_tensor_loop(build_model(MODEL), images, masks, epochs, r, BATCH)
        plain_s.append(time.perf_counter() - started)
    volumes = epochs * (len(data) // BATCH) * BATCH
    return {
        "volumes": len(data),
        "epochs": epochs,
        "loader_volumes_per_s": round(volumes / min(loader_s), 2),
        "plain_volumes_per_s": round(volumes / min(plain_s), 2),
        "ratio": round(min(plain_s) / min(loader_s), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--counts", default="50,200")
    parser.add_argument("--cache-mib", type=int, default=DEFAULT_CACHE_BYTES // 2**20)
    parser.add_argument("--throughput-volumes", type=int, default=16)
    parser.add_argument("--throughput-side", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(one_increment(Path(args.child[0]), int(args.child[1]), args.patch, args.cache_mib * 2**20)))
        return
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_volumes(Path(tmp) / "big", max(counts), args.side)
        memory = []
        for count in counts:
            command = [sys.executable, __file__, "--child", str(root), str(count), "--threads", str(args.threads)]
            command += ["--patch", str(args.patch), "--cache-mib", str(args.cache_mib)]
            memory.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        small = write_volumes(Path(tmp) / "small", args.throughput_volumes, args.throughput_side)
        speed = throughput(small, args.epochs, args.repeats)
    growth = memory[-1]["peak_rss_mib"] / memory[0]["peak_rss_mib"] - 1
    print(
        json.dumps(
            {
                "threads": args.threads,
                "memory": {
                    "side": args.side,
                    "patch": args.patch,
                    "cache_mib": args.cache_mib,
                    "runs": memory,
                    "growth": round(growth, 3),
                    "target_met": growth <= 0.10,
                },
                "throughput": {**speed, "side": args.throughput_side, "target_met": speed["ratio"] >= 0.9},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
