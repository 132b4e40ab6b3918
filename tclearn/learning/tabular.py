"""A synthetic tabular coalition (variant C's data): clinical feature tables that no hospital can learn alone.

The tables look like a lab export, not like a textbook sample:

- raw clinical scales: every column is one quantity in its own unit (troponin around 0.02 ng/mL, white cells
  around 7500 per µL); lab values are right-skewed (log-normal), and 3-5 % of a site's rows hold a few values
  3 to 10 times too large (unit or data-entry errors);
- correlated columns: a few latent factors (say inflammation, renal function) drive groups of columns, each
  column loading 0.75-0.95 on its group's factor;
- class imbalance: the overall prevalence (default 10 %) differs between sites, from a screening centre's few
  per cent to a referral centre's fifth;
- sites that differ: each sees its own case mix (its latent factors shifted), measures with its own
  calibration (a gain and an offset per column), and its cases are mostly one disease subtype, each subtype
  raising another factor (and, when a factor is spare, a little of a shared one). A model trained on one site
  learns its subtype and misses the others; the global test set G mixes every site's patients, so the coalition
  does better on G.

Every site's `train.csv` holds both classes; a `test.csv` may hold one class only (a screening site's small
test set may have no case), and G holds both.

Layout (what `tclearn demo --variant C --data DIR` reads; a user folder in this layout works the same):
`OUT/<hospital>/train.csv`, `OUT/<hospital>/test.csv`, `OUT/global.csv`, each with columns `f0..f{d-1}` and
`label` (0/1), and `OUT/coalition.json` describing the generator (each column's quantity, unit, typical value
and skew; each site's prevalence, subtype, case mix and calibration).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tclearn.errors import ConfigError
from tclearn.learning.synth import check_counts, hospital_name

GLOBAL_CSV = "global.csv"
LABEL = "label"

OUTLIER_RATE = (0.03, 0.05)  # share of a site's rows with a few values x3..x10
OUTLIER_FACTOR = (3.0, 10.0)
LOADING = (0.75, 0.95)  # a column's loading on its group's latent factor
SUBTYPE_SHIFT = 4.5  # how far a case of a subtype sits along its subtype's factor (in latent sd)
SHARED_SHIFT = 0.5  # and along the factor every subtype raises
OWN_SUBTYPE = 0.9  # share of a site's cases of its own subtype
PREVALENCE_SPREAD = (0.4, 2.0)  # site prevalences from 0.4x to 2x the overall one (screening to referral)


@dataclass(frozen=True)
class Quantity:
    """A measured quantity: `typical` is its median, `spread` its coefficient of variation (normal) or the
    standard deviation of its logarithm (skewed)."""

    name: str
    unit: str
    typical: float
    spread: float
    skewed: bool


QUANTITIES = (
    Quantity("troponin", "ng/mL", 0.02, 0.7, True),
    Quantity("white cells", "/uL", 7500.0, 0.3, True),
    Quantity("sodium", "mmol/L", 140.0, 0.025, False),
    Quantity("creatinine", "mg/dL", 1.0, 0.35, True),
    Quantity("NT-proBNP", "pg/mL", 900.0, 0.9, True),
    Quantity("haemoglobin", "g/dL", 13.5, 0.12, False),
    Quantity("CRP", "mg/L", 8.0, 0.9, True),
    Quantity("potassium", "mmol/L", 4.2, 0.1, False),
    Quantity("platelets", "10^3/uL", 250.0, 0.25, False),
    Quantity("heart rate", "bpm", 78.0, 0.15, False),
    Quantity("lactate", "mmol/L", 1.4, 0.4, True),
    Quantity("systolic pressure", "mmHg", 128.0, 0.13, False),
    Quantity("ALT", "U/L", 30.0, 0.5, True),
    Quantity("age", "years", 62.0, 0.22, False),
    Quantity("D-dimer", "ng/mL", 500.0, 0.8, True),
    Quantity("albumin", "g/dL", 4.0, 0.12, False),
    Quantity("bilirubin", "mg/dL", 0.8, 0.5, True),
    Quantity("glucose", "mg/dL", 105.0, 0.25, True),
    Quantity("INR", "", 1.1, 0.1, False),
    Quantity("ferritin", "ng/mL", 150.0, 0.7, True),
)


@dataclass(frozen=True)
class Population:
    """What every site shares: its columns' quantities and scales, the latent structure and the subtypes."""

    quantities: tuple[Quantity, ...]
    typical: np.ndarray  # (d,) each column's median
    groups: np.ndarray  # (d,) each column's latent factor
    loadings: np.ndarray  # (d,) signed loading on that factor
    subtypes: np.ndarray  # (s, k) each subtype's shift of the latent factors for a case

    @property
    def factors(self) -> int:
        return int(self.subtypes.shape[1])


@dataclass(frozen=True)
class Site:
    """One hospital: its prevalence, its cases' usual subtype, its case mix, its calibration, its outliers."""

    prevalence: float
    subtype: int
    case_mix: np.ndarray  # (k,) its patients' latent shift
    gain: np.ndarray  # (d,)
    offset: np.ndarray  # (d,) in units of each column's typical value
    outliers: float


def factor_count(features: int) -> int:
    """Latent factors: one per two columns, at least one and at most six."""
    return int(np.clip(features // 2, 1, 6))


def population(features: int, hospitals: int, rng: np.random.Generator) -> Population:
    k = factor_count(features)
    quantities = tuple(QUANTITIES[j % len(QUANTITIES)] for j in range(features))
    typical = np.array([q.typical for q in quantities]) * rng.lognormal(0.0, 0.1, features)
    groups = np.arange(features) % k
    loadings = rng.uniform(*LOADING, features) * rng.choice([-1.0, 1.0], features, p=[0.25, 0.75])
    count = min(hospitals, k)  # one subtype per site while there are factors; a spare factor is shared
    subtypes = np.zeros((count, k))
    subtypes[np.arange(count), np.arange(count)] = SUBTYPE_SHIFT
    if k > count:  # every case raises the last factor a little (a common sign of the disease)
        subtypes[:, k - 1] += SHARED_SHIFT
    return Population(quantities, typical, groups, loadings, subtypes)


def site_prevalences(hospitals: int, prevalence: float, rng: np.random.Generator) -> np.ndarray:
    """Sites' prevalences spread from a screening centre's to a referral centre's, averaging `prevalence`."""
    factors = np.geomspace(*PREVALENCE_SPREAD, hospitals) if hospitals > 1 else np.ones(1)
    factors = rng.permutation(factors / factors.mean())
    return np.clip(prevalence * factors, 0.005, 0.6)


def make_site(index: int, prevalence: float, pop: Population, rng: np.random.Generator) -> Site:
    d = len(pop.typical)
    return Site(
        prevalence=prevalence,
        subtype=index % len(pop.subtypes),
        case_mix=rng.normal(0.0, 0.5, pop.factors),
        gain=rng.lognormal(0.0, 0.06, d),
        offset=rng.normal(0.0, 0.05, d),
        outliers=float(rng.uniform(*OUTLIER_RATE)),
    )


def patients(pop: Population, site: Site, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raw measurements of `site`'s patients with these labels: (n, d) in each column's unit."""
    n, k = len(labels), pop.factors
    latent = site.case_mix + rng.normal(size=(n, k))
    cases = np.flatnonzero(labels == 1)
    others = [s for s in range(len(pop.subtypes)) if s != site.subtype] or [site.subtype]
    own = rng.random(len(cases)) < OWN_SUBTYPE
    kinds = np.where(own, site.subtype, rng.choice(others, len(cases)))
    latent[cases] += pop.subtypes[kinds]
    noise = np.sqrt(1.0 - pop.loadings**2)
    z = latent[:, pop.groups] * pop.loadings + noise * rng.normal(size=(n, len(pop.typical)))
    spread = np.array([q.spread for q in pop.quantities])
    skewed = np.array([q.skewed for q in pop.quantities])
    raw = np.where(skewed, pop.typical * np.exp(spread * z), pop.typical * (1.0 + spread * z))
    raw = site.gain * raw + site.offset * pop.typical
    wrong = np.flatnonzero(rng.random(n) < site.outliers)
    for row in wrong:
        columns = rng.choice(len(pop.typical), size=min(len(pop.typical), int(rng.integers(1, 4))), replace=False)
        raw[row, columns] *= rng.uniform(*OUTLIER_FACTOR, len(columns))
    return raw


def case_count(rows: int, prevalence: float) -> int:
    """Cases in a training table: the prevalence's share, but at least two cases and two controls."""
    if rows < 4:
        raise ConfigError(f"a training table of {rows} rows cannot hold at least 2 cases of each class (train >= 4)")
    return int(min(rows - 2, max(2, round(prevalence * rows))))


def write_table(
    path: Path, x: np.ndarray, y: np.ndarray, label_column: str = LABEL, columns: Sequence[str] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(columns or [f"f{j}" for j in range(x.shape[1])]), label_column])
        writer.writerows([*(f"{v:.6g}" for v in row), int(label)] for row, label in zip(x, y, strict=True))


def synth_tabular(
    out: str | Path,
    hospitals: int = 4,
    train: int = 128,
    test: int = 48,
    global_size: int = 192,
    features: int = 8,
    seed: int = 0,
    prevalence: float = 0.1,
) -> dict[str, object]:
    """Write a synthetic tabular coalition under `out`; returns (and writes) its description."""
    check_counts(hospitals, train, test, global_size)
    if features < 2:
        raise ConfigError(f"features must be >= 2, got {features}")
    if not 0.0 < prevalence < 1.0:
        raise ConfigError(f"prevalence must lie between 0 and 1 (a share of cases), got {prevalence}")
    if global_size < 2:
        raise ConfigError(f"the global test set G needs at least 2 rows to hold both classes, got {global_size}")
    rng = np.random.default_rng(seed)
    pop = population(features, hospitals, rng)
    sites = [make_site(i, p, pop, rng) for i, p in enumerate(site_prevalences(hospitals, prevalence, rng))]
    cases = [case_count(train, s.prevalence) for s in sites]
    root = Path(out)
    for index, (site, count) in enumerate(zip(sites, cases, strict=True)):
        y = rng.permutation(np.repeat([1, 0], [count, train - count]))
        write_table(root / hospital_name(index) / "train.csv", patients(pop, site, y, rng), y)
        y = (rng.random(test) < site.prevalence).astype(int)
        write_table(root / hospital_name(index) / "test.csv", patients(pop, site, y, rng), y)
    owner = np.arange(global_size) % hospitals
    odds = np.array([sites[h].prevalence for h in owner])
    positives = int(np.clip(round(odds.sum()), 1, global_size - 1))
    y = np.zeros(global_size, dtype=int)
    y[rng.choice(global_size, positives, replace=False, p=odds / odds.sum())] = 1
    x = np.zeros((global_size, features))
    for h, site in enumerate(sites):
        rows = owner == h
        x[rows] = patients(pop, site, y[rows], rng)
    order = rng.permutation(global_size)
    write_table(root / GLOBAL_CSV, x[order], y[order])
    description = describe(pop, sites, cases, seed, prevalence, (train, test, global_size), positives)
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description


def describe(
    pop: Population,
    sites: list[Site],
    cases: list[int],
    seed: int,
    prevalence: float,
    sizes: tuple[int, int, int],
    global_cases: int,
) -> dict[str, object]:
    train, test, global_size = sizes
    return {
        "kind": "tabular",
        "seed": seed,
        "features": len(pop.typical),
        "prevalence": prevalence,
        "train_per_hospital": train,
        "test_per_hospital": test,
        "global": global_size,
        "global_cases": global_cases,
        "factors": pop.factors,
        "subtypes": pop.subtypes.round(3).tolist(),
        "columns": {
            f"f{j}": {
                "quantity": q.name,
                "unit": q.unit,
                "typical": float(f"{t:.4g}"),
                "spread": q.spread,
                "skewed": q.skewed,
                "factor": int(g),
                "loading": round(float(w), 3),
            }
            for j, (q, t, g, w) in enumerate(zip(pop.quantities, pop.typical, pop.groups, pop.loadings, strict=True))
        },
        "hospitals": {
            hospital_name(i): {
                "prevalence": round(s.prevalence, 4),
                "train_cases": c,
                "subtype": s.subtype,
                "case_mix": s.case_mix.round(3).tolist(),
                "gain": s.gain.round(3).tolist(),
                "offset": s.offset.round(3).tolist(),
                "outlier_rows": round(s.outliers, 3),
            }
            for i, (s, c) in enumerate(zip(sites, cases, strict=True))
        },
    }


def split_table(
    out: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    columns: Sequence[str],
    *,
    by: str,
    hospitals: int = 3,
    global_share: float = 0.25,
    test_share: float = 0.25,
    prevalence: float | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """One real table (raw rows `x`, 0/1 labels `y`) written as a coalition in the variant C layout: G a random
    `global_share` of the rows, the rest shared among `hospitals` by the column `by` (each site sees its own
    part of its range, with overlap: a skewed case mix), each site's rows split into train and test. With
    `prevalence`, positives are dropped at random first until they are that share of the rows (1:9 is 0.1)."""
    if by not in columns:
        raise ConfigError(f"no column {by!r} to split the sites by; columns: {', '.join(columns)}")
    if not 0 < global_share < 1 or not 0 < test_share < 1 or hospitals < 2:
        raise ConfigError("global_share and test_share must be in (0, 1), and a coalition has at least 2 hospitals")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(x))
    if prevalence is not None:
        negatives, positives = rows[y[rows] == 0], rows[y[rows] == 1]
        keep = min(len(positives), round(prevalence * len(negatives) / (1 - prevalence)))
        rows = rng.permutation(np.concatenate([negatives, positives[:keep]]))
    cut = round(global_share * len(rows))
    shared, rest = rows[:cut], rows[cut:]
    column = x[rest, list(columns).index(by)]
    order = rest[np.argsort(column + rng.normal(0.0, 0.5 * column.std(), len(rest)))]
    root = Path(out)
    sites = {}
    for k, part in enumerate(np.array_split(order, hospitals)):
        part = rng.permutation(part)
        test = max(1, round(test_share * len(part)))
        train, local = part[test:], part[:test]
        name = hospital_name(k)
        if len(set(y[train].tolist())) < 2:
            raise ConfigError(
                f"{name}'s training rows hold one class only: split into fewer sites, or by another column"
            )
        write_table(root / name / "train.csv", x[train], y[train], columns=columns)
        write_table(root / name / "test.csv", x[local], y[local], columns=columns)
        sites[name] = {"train": len(train), "test": len(local), "prevalence": round(float(y[train].mean()), 3)}
    write_table(root / GLOBAL_CSV, x[shared], y[shared], columns=columns)
    description: dict[str, object] = {
        "kind": "split",
        "by": by,
        "seed": seed,
        "global": len(shared),
        "hospitals": sites,
    }
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
