"""Benchmark of the coalition watermark and the hospitals' export fingerprints; prints one JSON object.

For each seed: a synthetic coalition of 3 hospitals (the demo's generator: skewed scanners, 64x64, 96 training cases
each, G of 48 cases) trained incrementally from one genesis — 6 rounds, each hospital in turn, 8 epochs of Adam at
lr 0.003, Dice loss — twice: without marks, and as a watermarked coalition trains: the genesis stamped with the
coalition's watermark (128 bits on the largest weight tensor) at founding, the mark loss in every increment.
Each hospital then exports the watermarked model with its fingerprint (64 bits,
its key derived from the hospital's master secret, the model and a nonce; written by self-distillation on its own
training images), as `tclearn export` does.

- cost: Dice on G without marks, with the watermark, and of each export. Target: watermark plus fingerprint cost
  <= 0.5 Dice points (mean over seeds and exports of plain - export). The paired runs start from different weights
  (stamped or not) and differ in their whole training trajectory, so each seed's figure is shown beside the mean; the
  fingerprint's own cost (watermarked committed model - its export, the same weights otherwise) is reported apart.
- robustness: every export after 5 epochs of fine-tuning on another hospital's training data (the coalition's own
  optimiser and rate), 50 % magnitude pruning of every weight tensor, int8 quantisation, and all three in turn; the
  watermark and the fingerprint are read in each (bits wrong), with the tampered model's Dice on G.
- tracing: each tampered export traced against every export on record in its coalition: the exporting hospital must
  be named, and no other. Target: 20 of 20 (5 seeds x 3 hospitals x (4 tamperings + none) = 75 trials).
- false accusations: models exported by no one — every coalition's committed models with and without the watermark,
  and every other coalition's exports, tampered or not — traced against exports drawn as hospitals draw them (a fresh
  master secret, the model's hash, a nonce), three on record per trial; a trace names an export whose fingerprint
  reads right or inverted (`watermark.matches`, as `tclearn trace` does). Target: no accusation in 1,000 trials; the
  analytic bound (union over both tails of the exports on record of P(Binomial(64, 1/2) <= threshold)) <= 1e-6.

- stress (--stress): where the marks break, on the first seed's first export: fine-tuning at higher rates and for
  longer, heavier pruning, and removal by an adversary who holds a key — training on its own data with the task loss
  plus a hinge that pushes the key's bits to the wrong side — with the Dice on G and the bits wrong at each step.

Usage: PYTHONPATH=. python bench/watermark.py [--seeds 0,1,2,3,4] [--null 1000] [--threads 2] [--size 64] [--stress]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.train import machine
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.evaluate import evaluate
from tclearn.learning.fingerprint import embed
from tclearn.learning.models import build_model
from tclearn.learning.synth import synth_coalition
from tclearn.learning.tampering import int8_round_trip, magnitude_prune
from tclearn.learning.train import LossName, TrainConfig, train_increment
from tclearn.learning.watermark import (
    FINGERPRINT_BITS,
    MAX_CARRIER,
    MarkKey,
    choose_carrier,
    false_accusation_bound,
    fingerprint_secret,
    matches,
    measure,
    new_key,
    stamp,
    threshold,
)
from tclearn.vault.codec import encode_model

MODEL = {"arch": "unet", "options": {"channels": [16, 32, 64], "strides": [2, 2]}}
HOSPITALS, TRAIN, GLOBAL = 3, 96, 48
ROUNDS, EPOCHS, LR, BATCH = 6, 8, 0.003, 8
TUNE_EPOCHS, PRUNED = 5, 0.5
StateDict = dict[str, torch.Tensor]


def network(weights: StateDict) -> torch.nn.Module:
    model = build_model(MODEL)
    model.load_state_dict(weights)
    return model


def dice(weights: StateDict, data: ImageData) -> float:
    return round(evaluate(network(weights), data).score, 4)


def coalition(genesis: StateDict, hospitals: list[ImageData], seed: int, marks: tuple[MarkKey, ...]) -> StateDict:
    """The head after every hospital's increments, in turn, round after round."""
    weights = genesis
    for r in range(ROUNDS):
        for i, data in enumerate(hospitals):
            config = TrainConfig(
                epochs=EPOCHS, batch_size=BATCH, lr=LR, loss=LossName.DICE, seed=seed * 100 + r * 10 + i, marks=marks
            )
            weights = train_increment(network(weights), data, config).weights
    return weights


def fingerprint_key(weights: StateDict) -> MarkKey:
    """An export's key as a hospital draws it: its master secret, the model's hash, a nonce."""
    model_hash = hashlib.sha256(encode_model(weights)).hexdigest()
    secret = fingerprint_secret(os.urandom(32), model_hash, os.urandom(16))
    return new_key(
        weights,
        "fingerprint",
        bits=FINGERPRINT_BITS,
        secret=secret,
        carrier=choose_carrier(weights, minimum=MAX_CARRIER),
    )


def tamperings(weights: StateDict, other: ImageData, seed: int) -> dict[str, StateDict]:
    config = TrainConfig(epochs=TUNE_EPOCHS, batch_size=BATCH, lr=LR, loss=LossName.DICE, seed=seed)
    tuned = train_increment(network(weights), other, config).weights
    return {
        "fine_tune": tuned,
        "prune_50": magnitude_prune(weights, PRUNED),
        "int8": int8_round_trip(weights),
        "all_three": int8_round_trip(magnitude_prune(tuned, PRUNED)),
    }


def founded(seed: int, size: int) -> tuple[list[ImageData], ImageData, StateDict, MarkKey]:
    """Coalition `seed`'s hospitals' training sets, its G, its genesis and its watermark key."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth_coalition(root, hospitals=HOSPITALS, train=TRAIN, test=8, global_size=GLOBAL, size=size, seed=seed)
        hospitals = [load_segmentation(root / f"hospital-{i + 1}" / "train") for i in range(HOSPITALS)]
        g = load_segmentation(root / "global")
    torch.manual_seed(seed)
    genesis = dict(build_model(MODEL).state_dict())
    watermark = new_key(genesis, "coalition")
    return hospitals, g, genesis, watermark


def one_seed(seed: int, size: int) -> dict[str, Any]:
    hospitals, g, genesis, watermark = founded(seed, size)
    started = time.perf_counter()
    plain = coalition(genesis, hospitals, seed, ())
    marked = coalition(stamp(genesis, watermark), hospitals, seed, (watermark,))  # founding stamps the genesis
    training_s = time.perf_counter() - started
    keys, exports, embed_s = [], [], []
    for h, data in enumerate(hospitals):
        key = fingerprint_key(marked)
        started = time.perf_counter()
        done = embed(network(marked), data, [watermark, key], seed=seed * 10 + h)
        embed_s.append(time.perf_counter() - started)
        keys.append(key)
        exports.append(done.weights)
    result: dict[str, Any] = {
        "seed": seed,
        "dice": {
            "plain": dice(plain, g),
            "watermarked": dice(marked, g),
            "exports": [dice(w, g) for w in exports],
        },
        "watermark_errors": {
            "watermarked": measure(marked, watermark).errors,
            "plain": measure(plain, watermark).errors,
        },
        "training_s": round(training_s, 1),
        "embed_s": [round(s, 2) for s in embed_s],
        "traces": [],
    }
    suspects: list[StateDict] = [plain, marked]
    for h, weights in enumerate(exports):
        tampered = tamperings(weights, hospitals[(h + 1) % HOSPITALS], seed * 10 + h)
        for name, w in {"none": weights, **tampered}.items():
            readings = [measure(w, k) for k in keys]
            named = matches(readings)
            entry = {
                "hospital": h,
                "tampering": name,
                "dice": dice(w, g),
                "watermark_errors": measure(w, watermark).errors,
                "fingerprint_errors": [r.errors for r in readings],
                "named": named,
                "right": named == [h],
            }
            result["traces"].append(entry)
            suspects.append(w)
    return result | {"_suspects": suspects, "_keys": keys}


def removal(weights: StateDict, key: MarkKey, data: ImageData, g: ImageData, epochs: int) -> list[dict[str, Any]]:
    """An adversary holding `key` trains on `data` with the Dice loss plus a hinge pushing every bit of the key to the
    wrong side by its margin: bits wrong and Dice on G after each epoch."""
    from monai.losses import DiceLoss

    from tclearn.learning.samples import batches

    model = network(weights)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    dice_loss = DiceLoss(sigmoid=True)
    generator = torch.Generator().manual_seed(0)
    curve = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(data), generator=generator).tolist()
        for xb, yb in batches(data, BATCH, order, drop_last=True):
            params = dict(model.named_parameters())
            w = torch.cat([params[n].flatten() for n in key.carrier])
            u = (key.projection @ w) * key.dim**0.5 / w.norm() * key.signs.float()
            loss = dice_loss(model(xb.float()), yb.float()) + torch.relu(key.margin + u).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        now = {k: v.detach().clone() for k, v in model.state_dict().items()}
        curve.append({"epochs": epoch, "bits_wrong": measure(now, key).errors, "dice": dice(now, g)})
    return curve


def stress(seed: int, size: int) -> dict[str, Any]:
    """Where the marks break: the first export of coalition `seed` under ever stronger tampering."""
    hospitals, g, genesis, watermark = founded(seed, size)
    marked = coalition(stamp(genesis, watermark), hospitals, seed, (watermark,))
    key = fingerprint_key(marked)
    exported = embed(network(marked), hospitals[0], [watermark, key], seed=seed).weights
    other = hospitals[1]

    def read(w: StateDict) -> dict[str, Any]:
        return {
            "dice": dice(w, g),
            "watermark_wrong": measure(w, watermark).errors,
            "fingerprint_wrong": measure(w, key).errors,
        }

    tuned = {}
    for lr in (0.003, 0.01, 0.03):
        for epochs in (5, 20):
            config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=lr, loss=LossName.DICE, seed=seed)
            tuned[f"lr {lr:g}, {epochs} epochs"] = read(train_increment(network(exported), other, config).weights)
    return {
        "export": read(exported),
        "fine_tune": tuned,
        "prune": {
            f"{fraction:g}": read(magnitude_prune(exported, fraction)) for fraction in (0.5, 0.7, 0.8, 0.9, 0.95)
        },
        "removal_of_the_fingerprint_by_its_holder": removal(exported, key, other, g, 5),
        "removal_of_the_watermark_by_a_member": removal(exported, watermark, other, g, 5),
        "fingerprint_threshold": threshold(FINGERPRINT_BITS, 2 * HOSPITALS),
        "watermark_threshold": threshold(128, 1),
    }


def null_trials(seeds: list[dict[str, Any]], trials: int) -> dict[str, Any]:
    """Models exported by no one, traced against exports on record: another coalition's keys, then fresh draws."""
    errors: list[int] = []
    accused = 0
    done = 0
    pools = [(s["_suspects"], [o["_keys"] for o in seeds if o is not s]) for s in seeds]
    for suspects, others in pools:  # another coalition's exports on record
        for w in suspects:
            for keys in others:
                readings = [measure(w, k) for k in keys]
                accused += bool(matches(readings))
                errors.extend(r.errors for r in readings)
                done += 1
    models = [w for s in seeds for w in s["_suspects"]]
    while done < trials:  # exports drawn afresh, three on record per trial
        w = models[done % len(models)]
        readings = [measure(w, fingerprint_key(w)) for _ in range(HOSPITALS)]
        accused += bool(matches(readings))
        errors.extend(r.errors for r in readings)
        done += 1
    return {
        "trials": done,
        "accusations": accused,
        "fewest_bits_wrong": min(errors),
        "most_bits_wrong": max(errors),
        "mean_bits_wrong": round(statistics.fmean(errors), 2),
        "threshold": threshold(FINGERPRINT_BITS, 2 * HOSPITALS),
        "analytic_bound": false_accusation_bound(FINGERPRINT_BITS, HOSPITALS),
    }


def summary(seeds: list[dict[str, Any]], null: dict[str, Any]) -> dict[str, Any]:
    costs = [s["dice"]["plain"] - e for s in seeds for e in s["dice"]["exports"]]
    fingerprint = [s["dice"]["watermarked"] - e for s in seeds for e in s["dice"]["exports"]]
    watermark = [s["dice"]["plain"] - s["dice"]["watermarked"] for s in seeds]
    traces = [t for s in seeds for t in s["traces"]]
    survived = {
        name: {
            "watermark_max_errors": max(t["watermark_errors"] for t in traces if t["tampering"] == name),
            "fingerprint_max_errors": max(
                t["fingerprint_errors"][t["hospital"]] for t in traces if t["tampering"] == name
            ),
        }
        for name in ("fine_tune", "prune_50", "int8", "all_three")
    }
    return {
        "dice_cost_points": round(100 * statistics.fmean(costs), 2),
        "dice_cost_points_by_export": [round(100 * c, 2) for c in costs],
        "watermark_cost_points_by_seed": [round(100 * c, 2) for c in watermark],
        "fingerprint_cost_points_mean": round(100 * statistics.fmean(fingerprint), 2),
        "cost_target_met": statistics.fmean(costs) <= 0.005,
        "survival": survived,
        "watermark_threshold_1_test": threshold(128, 1),
        "fingerprint_threshold": threshold(FINGERPRINT_BITS, 2 * HOSPITALS),
        "traces_right": f"{sum(t['right'] for t in traces)} of {len(traces)}",
        "tracing_target_met": all(t["right"] for t in traces) and len(traces) >= 20,
        "false_accusations": f"{null['accusations']} in {null['trials']}",
        "false_accusation_target_met": null["accusations"] == 0
        and null["trials"] >= 1000
        and null["analytic_bound"] <= 1e-6,
        "analytic_false_accusation_bound": null["analytic_bound"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--null", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stress", action="store_true", help="Only the stress ladder, on the first seed (minutes).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stress:
        first = int(args.seeds.split(",")[0])
        print(
            json.dumps({**machine(args.threads, args.size, MODEL, BATCH), "stress": stress(first, args.size)}, indent=2)
        )
        return
    seeds = [one_seed(int(s), args.size) for s in args.seeds.split(",")]
    null = null_trials(seeds, args.null)
    report = {
        **machine(args.threads, args.size, MODEL, BATCH),
        "summary": summary(seeds, null),
        "null": null,
        "seeds": [{k: v for k, v in s.items() if not k.startswith("_")} for s in seeds],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
