"""Variant C benchmark: CKKS encrypted models (TenSEAL) beside raw TenSEAL operations, in one run.

    PYTHONPATH=. python bench/he.py [--out bench-he.json]

Prints one JSON document (and writes it to --out). Times are seconds, best of --repeats. Parameters are
`tclearn.he.context.DEFAULT_PARAMS` (N = 8192, 4096 slots). Expansion = serialized encrypted model bytes /
(4 bytes x number of weights), for models whose weight vectors fill the 4096 slots: a fresh container
(every level), a compact one (dropped to the levels plain-data inference needs, what is stored) and a cold
one (level 0, refreshed by the supervisor before each use).
Inference and training times are measured on smaller models (an `mm` costs one rotation per weight).

"tables" (`--tables`, minutes): variant C on tables with real properties (`tclearn.learning.tabular`: raw clinical
scales, correlated columns, outliers, 1:9 classes, three sites with their own case mix), for 30 and 64 features
and three seeds: the scaling round's time (three sites' encrypted statistics, the supervisor decrypting their
sums), then the same coalition (each site in turn trains an increment of 3 steps, `--rounds` times) encrypted
and in plaintext (`tclearn.he.model.train`, the twin), each site alone with as many steps, and an exact
logistic regression on the pooled rows (true sigmoid, no bounds: the ceiling). Accuracy on G.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts

from tclearn.he import encrypted as enc
from tclearn.he import model as plain
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.context import DEFAULT_PARAMS, HEContext
from tclearn.he.duties import agree_scaling, train_model
from tclearn.he.keys import generate
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.learning.tables import read_table
from tclearn.learning.tabular import GLOBAL_CSV, split_table, synth_tabular
from tclearn.state.db import Database


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 4), result


def raw_ops(he: HEContext, repeats: int) -> dict[str, Any]:
    values = np.random.default_rng(0).normal(size=DEFAULT_PARAMS.slots).tolist()
    t_enc, vector = best(lambda: ts.ckks_vector(he.context, values), repeats)
    t_dot, dot = best(lambda: vector.dot(values), repeats)
    t_dec, _ = best(lambda: vector.decrypt(), repeats)
    t_ser, data = best(lambda: vector.serialize(), repeats)
    return {
        "encrypt_4096_s": t_enc,
        "dot_4096_s": t_dot,
        "decrypt_4096_s": t_dec,
        "serialize_s": t_ser,
        "ciphertext_bytes": len(data),
        "ciphertext_expansion_vs_float32": round(len(data) / (4 * DEFAULT_PARAMS.slots), 2),
        # a full ciphertext (4096 values) serialized at each level: the floor of any packing at that level
        "ciphertext_bytes_by_level": {
            level: len(he.drop_to(vector, level).serialize()) for level in range(DEFAULT_PARAMS.levels, -1, -1)
        },
        "dot_abs_error": abs(he.decrypt(dot)[0] - float(np.dot(values, values))),
    }


def expansion(he: HEContext, spec: plain.ModelSpec, repeats: int) -> dict[str, Any]:
    weights = plain.init_weights(spec)
    t_enc, model = best(lambda: enc.encrypt_model(he, spec, weights), repeats)
    fresh = len(model.to_bytes())
    compact = len(enc.compact(he, model).to_bytes())
    cold = len(enc.compact(he, model, level=0).to_bytes())
    t_dec, _ = best(lambda: enc.decrypt_model(he, model), repeats)
    raw = 4 * spec.weight_count
    return {
        "model": spec.to_json(),
        "weights": spec.weight_count,
        "ciphertexts": len(spec.shapes()),
        "encrypt_s": t_enc,
        "decrypt_s": t_dec,
        "fresh_bytes": fresh,
        "compact_bytes": compact,
        "float32_bytes": raw,
        "expansion_fresh": round(fresh / raw, 2),
        "expansion_compact": round(compact / raw, 2),
        "cold_bytes": cold,
        "expansion_cold": round(cold / raw, 2),
    }


def timings(he: HEContext, spec: plain.ModelSpec, samples: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(samples, spec.features))
    y = (x[:, 0] > 0).astype(np.float64)
    weights = plain.init_weights(spec)
    model = enc.encrypt_model(he, spec, weights)
    t_inf, z = best(lambda: enc.logits(he, model, x), repeats)
    columns = enc.encrypt_features(he, x)
    t_inf_enc, z_enc = best(lambda: enc.logits_encrypted(he, model, columns), repeats)
    expected = plain.logits(spec, weights, x)
    result: dict[str, Any] = {
        "model": spec.to_json(),
        "samples": samples,
        "inference_plain_data_s": t_inf,
        "inference_encrypted_data_s": t_inf_enc,
        "max_abs_error_plain_data": float(np.abs(he.decrypt(z) - expected).max()),
        "max_abs_error_encrypted_data": float(np.abs(he.decrypt(z_enc) - expected).max()),
    }
    if spec.kind == "logreg":
        t_step, stepped = best(lambda: enc.gradient_step(he, model, x, y, 0.5), repeats)
        t_refresh, _ = best(lambda: he.encrypt(he.decrypt(stepped.vectors["w"])), repeats)
        result["training_step_s"] = t_step
        result["refresh_s"] = t_refresh
    else:  # the two intermediate refreshes done in process (what the supervisor does, without the HTTP trip)
        batch = min(samples, 64)

        def local(vectors: list[ts.CKKSVector]) -> list[ts.CKKSVector]:
            return [he.encrypt(he.decrypt(v)) for v in vectors]

        t_step, stepped = best(lambda: enc.gradient_step(he, model, x[:batch], y[:batch], 0.5, local), repeats)
        grads = plain.gradients(spec, weights, x[:batch], y[:batch])
        result["training_step_samples"] = batch
        result["training_step_s"] = t_step
        result["training_step_max_abs_error"] = float(
            max(np.abs(he.decrypt(stepped.vectors[n]) - (weights[n] - 0.5 * grads[n])).max() for n in weights)
        )
    return result


def exact_logistic(x: np.ndarray, y: np.ndarray, steps: int = 2000) -> np.ndarray:
    xa = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xa.shape[1])
    for _ in range(steps):
        w -= 0.5 * xa.T @ (1 / (1 + np.exp(-xa @ w)) - y) / len(x)
    return w


def tables(secret: HEContext, public: HEContext, features: int, seed: int, rounds: int) -> dict[str, Any]:
    """One synthetic raw-scale coalition of three sites."""
    with tempfile.TemporaryDirectory() as folder:
        synth_tabular(folder, hospitals=3, train=160, test=48, global_size=600, features=features, seed=seed)
        return {"features": features, "seed": seed, **coalition(secret, public, Path(folder), seed, rounds)}


def real(secret: HEContext, public: HEContext, prevalence: float | None, seed: int, rounds: int) -> dict[str, Any]:
    """The Wisconsin breast-cancer table (569 patients, 30 raw measurements; scikit-learn ships it), malignant = 1,
    split into three sites by a measurement (`split_table`), at its own prevalence (37 %) or at 1:9."""
    from sklearn.datasets import load_breast_cancer  # a dev dependency: the data ship inside the package

    data = load_breast_cancer()
    columns = [c.replace(" ", "_") for c in data.feature_names]
    by = "mean_texture" if prevalence is None else "mean_symmetry"  # at 1:9, low texture holds no malignancy
    with tempfile.TemporaryDirectory() as folder:
        label = (data.target == 0).astype(np.float64)
        split_table(folder, data.data, label, columns, by=by, prevalence=prevalence, seed=seed)
        return {
            "table": "breast_cancer",
            "by": by,
            "seed": seed,
            **coalition(secret, public, Path(folder), seed, rounds),
        }


def coalition(secret: HEContext, public: HEContext, root: Path, seed: int, rounds: int) -> dict[str, Any]:
    """The scaling round, then C against its plaintext twin, each site alone and the pooled rows."""
    g = read_table(root / GLOBAL_CSV)
    sites = [read_table(root / f"hospital-{k}" / "train.csv", columns=g.columns) for k in (1, 2, 3)]
    features = len(g.columns)
    supervisor = Supervisor(secret, Database("sqlite://"), Limits(requests_per_minute=100_000))
    client = LocalSupervisorClient(supervisor, "0xBench")
    start = time.perf_counter()
    scaling = agree_scaling(public, g.columns, [t.x for t in sites], client)
    round_s = time.perf_counter() - start
    spec = plain.ModelSpec("logreg", features, scaling=scaling)
    genesis = plain.init_weights(spec, seed)
    model, twin = enc.compact(public, enc.encrypt_model(public, spec, genesis)), genesis
    start = time.perf_counter()
    for _ in range(rounds):
        for t in sites:
            model = enc.compact(public, train_model(public, model, t.x, t.y, client, steps=3, lr=1.0))
            twin = plain.train(spec, twin, t.x, t.y, steps=3, lr=1.0)
    train_s = time.perf_counter() - start
    steps = 3 * rounds * len(sites)

    def on_g(weights: plain.Weights) -> float:
        return round(plain.accuracy(plain.logits(spec, weights, g.x), g.y), 4)

    encrypted = enc.decrypt_model(secret, model)
    pooled_x, pooled_y = np.vstack([t.x for t in sites]), np.concatenate([t.y for t in sites])
    exact = exact_logistic(scaling.apply(pooled_x), pooled_y)
    singles = [on_g(plain.train(spec, genesis, t.x, t.y, steps, 1.0)) for t in sites]
    coalition = on_g(encrypted)
    return {
        "site_prevalence": [round(float(t.y.mean()), 3) for t in sites],
        "g_prevalence": round(float(g.y.mean()), 3),
        "raw_std_ratio": round(float(pooled_x.std(0).max() / pooled_x.std(0).min()), 1),
        "scaling_round_s": round(round_s, 3),
        "encrypted_training_s": round(train_s, 1),
        "steps": steps,
        "accuracy_G": {
            "coalition_encrypted": coalition,
            "coalition_plaintext": on_g(twin),
            "sites_alone": singles,
            "pooled_plaintext": on_g(plain.train(spec, genesis, pooled_x, pooled_y, steps, 1.0)),
            "pooled_exact_logistic": round(
                plain.accuracy(np.hstack([scaling.apply(g.x), np.ones((len(g.x), 1))]) @ exact, g.y), 4
            ),
            "majority_class": round(float(1 - g.y.mean()), 4),
        },
        "encrypted_minus_plaintext": round(coalition - on_g(twin), 4),
        "encrypted_minus_best_site": round(coalition - max(singles), 4),
        "max_weight_difference": float(np.abs(encrypted["w"] - twin["w"]).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--tables", action="store_true", help="Also the raw-table coalitions (minutes).")
    parser.add_argument("--real", action="store_true", help="Also the breast-cancer table in three sites (sklearn).")
    parser.add_argument("--rounds", type=int, default=4, help="--tables, --real: increments per site.")
    args = parser.parse_args()
    start = time.perf_counter()
    he, public = generate()
    keygen = time.perf_counter() - start
    report = {
        "machine": platform.platform(),
        "tenseal": ts.__version__,
        "params": {**DEFAULT_PARAMS.to_json(), "slots": DEFAULT_PARAMS.slots, "security_bits": 128},
        "keygen_s": round(keygen, 3),
        "public_context_bytes": len(public),
        "raw_tenseal": raw_ops(he, args.repeats),
        "expansion": [
            expansion(he, plain.ModelSpec("logreg", DEFAULT_PARAMS.slots - 1), args.repeats),
            expansion(he, plain.ModelSpec("mlp", DEFAULT_PARAMS.slots - 1, 2), args.repeats),
        ],
        "timings": [
            timings(he, plain.ModelSpec("logreg", 63), 256, args.repeats),
            timings(he, plain.ModelSpec("mlp", 15, 8), 256, args.repeats),
        ],
    }
    if args.tables:
        members = HEContext.from_public(public)
        report["tables"] = [tables(he, members, f, seed, args.rounds) for f in (30, 64) for seed in (0, 1, 2)]
    if args.real:
        members = HEContext.from_public(public)
        report["real"] = [real(he, members, p, seed, args.rounds) for p in (None, 0.1) for seed in (0, 1, 2)]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
