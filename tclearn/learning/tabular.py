"""A synthetic tabular coalition (variant C's data): feature tables with each hospital's own domain shift.

Every hospital measures the same `features` quantities of its patients, and one shared rule decides the
label: `label = 1` iff w* . x + b* + noise > 0. What differs is who each hospital sees (covariate shift):
its patients vary widely in a few features of "its" own and hardly at all in the others, around its own
means, with its own label noise. A model trained on one hospital learns its own features' weights well and
the others' barely; the global test set G mixes every hospital's patients in equal parts, so the coalition,
which sees everyone's data in turn, does better on G than any hospital alone.

Layout (what `tclearn demo --variant C --data DIR` reads; a user folder in this layout works the same):
`OUT/<hospital>/train.csv`, `OUT/<hospital>/test.csv`, `OUT/global.csv`, each with columns `f0..f{d-1}` and
`label` (0/1), and `OUT/coalition.json` describing the generator.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tclearn.errors import ConfigError
from tclearn.learning.synth import check_counts, hospital_name

GLOBAL_CSV = "global.csv"
LABEL = "label"


def _profile(index: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Hospital `index`'s feature means, spreads and label noise."""
    rng = np.random.default_rng(seed * 1000 + index + 1)
    spread = np.full(features, 0.4)
    own = [(index * 2 + k) % features for k in range(max(2, features // 3))]
    spread[own] = 1.0
    means = rng.normal(0.0, 0.6, features)
    return means, spread, float(rng.uniform(0.0, 0.3))


def _sample(
    rule: np.ndarray, profile: tuple[np.ndarray, np.ndarray, float], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    means, spread, noise = profile
    x = means + spread * rng.normal(size=(count, len(means)))
    y = (x @ rule[:-1] + rule[-1] + noise * rng.normal(size=count) > 0).astype(int)
    return x, y


def write_table(path: Path, x: np.ndarray, y: np.ndarray, label_column: str = LABEL) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"f{j}" for j in range(x.shape[1])), label_column])
        writer.writerows([*(f"{v:.5f}" for v in row), int(label)] for row, label in zip(x, y, strict=True))


def synth_tabular(
    out: str | Path,
    hospitals: int = 4,
    train: int = 128,
    test: int = 48,
    global_size: int = 192,
    features: int = 8,
    seed: int = 0,
) -> dict[str, object]:
    """Write a synthetic tabular coalition under `out`; returns (and writes) its description."""
    check_counts(hospitals, train, test, global_size)
    if features < 2:
        raise ConfigError(f"features must be >= 2, got {features}")
    root = Path(out)
    rng = np.random.default_rng(seed)
    rule = np.append(rng.choice([-1.0, 1.0], features) * rng.uniform(0.5, 1.0, features), 0.0)
    profiles = [_profile(i, features, seed) for i in range(hospitals)]
    for index, profile in enumerate(profiles):
        for split, count in (("train", train), ("test", test)):
            write_table(root / hospital_name(index) / f"{split}.csv", *_sample(rule, profile, count, rng))
    parts = [_sample(rule, profiles[k % hospitals], 1, rng) for k in range(global_size)]
    write_table(root / GLOBAL_CSV, np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    description: dict[str, object] = {
        "kind": "tabular",
        "seed": seed,
        "features": features,
        "train_per_hospital": train,
        "test_per_hospital": test,
        "global": global_size,
        "rule": [round(float(v), 4) for v in rule],
        "hospitals": {
            hospital_name(i): {"means": p[0].round(3).tolist(), "spread": p[1].tolist(), "label_noise": round(p[2], 3)}
            for i, p in enumerate(profiles)
        },
    }
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
