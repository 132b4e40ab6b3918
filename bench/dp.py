"""Benchmark of differential privacy in training; prints one JSON object.

- throughput: samples/s of `train_increment` with DP-SGD beside the same call without DP, on the demo network
  (UNet 2-D, channels [16, 32, 64], strides [2, 2]), Dice loss, batch 8 (DP: Poisson batches of expected size 8),
  same data, threads and steps, in the same run (interleaved, best of repeats); DP twice: per-sample gradients by
  `torch.func.vmap` over the whole network (the default) and by Opacus's per-layer hooks (`GradSampleModule`).
  Target: DP >= 0.5x non-private. Each DP increment also pays once for its accountant (`accounting_s`, within
  the DP figures): 8 epochs of 32 images, the demo's increment, spread it over 32 steps.
- utility: the synthetic coalition (`tclearn demo`, variant A, honest hospitals, embedded chain) run to the end with
  each hospital's total epsilon capped at 1, 3 and 8 (delta 1e-5; plain sum of its increments, as the chain
  counts), and without DP: the head's Dice on G in each run, and its ratio to the non-private coalition's. Every run
  has the same policy (max_update 10: DP noise walks the weights) and data; DP runs train with momentum SGD.
  Target: >= 0.9x at epsilon <= 8. The curve is also written as dp-utility.json and dp-utility.png (--plot-dir).

Usage: PYTHONPATH=. python bench/dp.py [--threads 1] [--repeats 3] [--epochs 8] [--size 64]
                                       [--utility] [--cases 960] [--members 3] [--rounds 3]
                                       [--utility-batch 64] [--plot-dir out/bench]
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

from bench.train import machine
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.defaults import COALITION_TRAINING, DP_TRAINING
from tclearn.learning.models import build_model
from tclearn.learning.privacy import DPConfig, Mechanism, PerSample, epsilon_spent, poisson_steps
from tclearn.learning.synth import synth_coalition
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.ledger.values import epsilon_of

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


UTILITY_EPSILONS = (1.0, 3.0, 8.0, None)  # None: the non-private coalition


def bench_utility(cases: int, members: int, rounds: int, batch: int, seed: int) -> dict[str, Any]:
    """The head's score on G after the same rounds, at each hospital's epsilon cap and without DP."""
    from tclearn.ledger.chain import embedded_chain
    from tclearn.simulation.demo import DemoSettings, run_demo

    runs: dict[str, dict[str, Any]] = {}
    for cap in UTILITY_EPSILONS:
        settings = DemoSettings(
            members=members,
            byzantine=0,
            attack="none",  # type: ignore[arg-type]
            variant="A",  # type: ignore[arg-type]
            rounds=rounds,
            cases=cases,
            batch_size=batch,
            acceptance=AcceptancePolicy(min_batch_size=4, max_update=DP_TRAINING.max_update),  # one policy for all runs
            dp_epsilon=cap,
            baselines=False,
            seed=seed,
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            chain = embedded_chain(settings.accounts)
            result = run_demo(settings, chain, Path(out))
        summary = result.summary
        spent = {
            h.name: round(epsilon_of(result.client.privacy_spent(h.address)), 4) for h in result.coalition.hospitals
        }
        runs["none" if cap is None else f"{cap:g}"] = {
            "epsilon_cap": cap,
            "epsilon_per_increment": None if cap is None else round(settings.epsilon_per_increment, 4),
            "noise_multiplier": None if cap is None else result.coalition.backend.training.dp.noise_multiplier,
            "score_global": summary["scores"]["coalition"],
            "committed": summary["committed"],
            "rejected": summary["rejected"],
            "epsilon_spent": spent,
            "seconds": round(time.perf_counter() - started, 1),
        }
    plain = runs["none"]["score_global"]
    for run in runs.values():
        run["ratio_to_non_private"] = round(run["score_global"] / plain, 3) if plain else None
    return {
        "metric": "Dice on G",
        "members": members,
        "rounds": rounds,
        "cases_per_hospital": cases,
        "batch_size": batch,
        "delta": 1e-5,
        "runs": runs,
        "target_ratio_at_8": 0.9,
        "met": bool(runs["8"]["ratio_to_non_private"] is not None and runs["8"]["ratio_to_non_private"] >= 0.9),
    }


def plot_utility(utility: dict[str, Any], folder: Path) -> None:
    """dp-utility.json and dp-utility.png: the head's score on G against each hospital's epsilon cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dp-utility.json").write_text(json.dumps(utility, indent=2) + "\n")
    runs = utility["runs"]
    capped = [(r["epsilon_cap"], r["score_global"]) for r in runs.values() if r["epsilon_cap"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([c for c, _ in capped], [s for _, s in capped], "o-", label="DP coalition")
    ax.axhline(runs["none"]["score_global"], color="grey", linestyle="--", label="non-private coalition")
    ax.axhline(0.9 * runs["none"]["score_global"], color="grey", linestyle=":", label="0.9x non-private")
    ax.set_xscale("log")
    ax.set_xticks([c for c, _ in capped], [f"{c:g}" for c, _ in capped])
    ax.minorticks_off()
    ax.set_xlabel("each hospital's epsilon cap (delta 1e-5)")
    ax.set_ylabel(utility["metric"])
    ax.set_title(
        f"{utility['members']} hospitals, {utility['rounds']} rounds, {utility['cases_per_hospital']} cases each"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "dp-utility.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=COALITION_TRAINING.epochs)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--utility", action="store_true", help="Also run the utility curve (minutes).")
    parser.add_argument("--cases", type=int, default=960)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--utility-batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-dir", type=Path, default=Path("out/bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth_coalition(root, hospitals=1, train=32, test=4, global_size=4, size=args.size)
        data = load_segmentation(root / "hospital-1" / "train")
        report = {
            **machine(args.threads, args.size, MODEL, BATCH),
            "throughput": bench_throughput(data, args.epochs, args.repeats),
        }
    if args.utility:
        report["utility"] = bench_utility(args.cases, args.members, args.rounds, args.utility_batch, args.seed)
        plot_utility(report["utility"], args.plot_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
