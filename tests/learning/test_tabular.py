"""The synthetic tabular coalition: raw clinical scales, correlated column groups, imbalanced sites that each
hold both classes, and no hospital sufficing alone (a plain logistic regression, pooled vs one site, on G)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tclearn.errors import ConfigError
from tclearn.learning.synth import hospital_name
from tclearn.learning.tables import Table, read_table
from tclearn.learning.tabular import GLOBAL_CSV, split_table, synth_tabular

HOSPITALS = 4
FEATURES = 30
MARGIN = 0.03  # pooled minus the best single site, accuracy on G (measured: 0.061, 0.034, 0.108 for seeds 0-2)


def coalition(root: Path, seed: int) -> tuple[list[Table], Table, dict[str, object]]:
    described = synth_tabular(root, hospitals=HOSPITALS, features=FEATURES, global_size=1000, seed=seed)
    sites = [read_table(root / hospital_name(i) / "train.csv") for i in range(HOSPITALS)]
    return sites, read_table(root / GLOBAL_CSV), described


def fit(x: np.ndarray, y: np.ndarray, steps: int = 300, rate: float = 0.5) -> np.ndarray:
    """A plain logistic regression (exact sigmoid, full-batch gradient descent): weights then bias."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        w -= rate * design.T @ (p - y) / len(y)
    return w


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(((x @ w[:-1] + w[-1] > 0) == (y == 1)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pooled_model_beats_every_single_site_on_g(tmp_path: Path, seed: int) -> None:
    sites, g, _ = coalition(tmp_path, seed)
    pooled_x = np.vstack([s.x for s in sites])
    mean, std = pooled_x.mean(axis=0), pooled_x.std(axis=0)

    def scaled(x: np.ndarray) -> np.ndarray:
        return (x - mean) / std

    pooled = accuracy(fit(scaled(pooled_x), np.concatenate([s.y for s in sites])), scaled(g.x), g.y)
    single = max(accuracy(fit(scaled(s.x), s.y), scaled(g.x), g.y) for s in sites)
    majority = max(g.y.mean(), 1.0 - g.y.mean())
    assert pooled - single >= MARGIN, (pooled, single)
    assert pooled >= majority + 0.03, (pooled, majority)


def test_raw_scales_correlated_groups_and_imbalanced_sites(tmp_path: Path) -> None:
    sites, g, described = coalition(tmp_path, 0)
    x = np.vstack([s.x for s in sites])
    stds = x.std(axis=0)
    assert stds.max() / stds.min() > 100  # every column in its own unit
    columns = described["columns"]
    assert isinstance(columns, dict)
    assert any(c["skewed"] for c in columns.values()) and not all(c["skewed"] for c in columns.values())
    # groups driven by one latent factor: strongly correlated within (rank correlation: skew and outliers)
    ranks = np.argsort(np.argsort(x, axis=0), axis=0)
    corr = np.abs(np.corrcoef(ranks, rowvar=False))
    factor = np.array([columns[f"f{j}"]["factor"] for j in range(FEATURES)])
    within = [corr[i, j] for i in range(FEATURES) for j in range(i + 1, FEATURES) if factor[i] == factor[j]]
    across = [corr[i, j] for i in range(FEATURES) for j in range(i + 1, FEATURES) if factor[i] != factor[j]]
    assert np.mean(within) > 0.5 and np.mean(across) < 0.25, (np.mean(within), np.mean(across))
    # imbalance: about the prevalence asked for, varying between sites, both classes at every site
    prevalences = [s.y.mean() for s in sites]
    assert all(0 < p < 1 for p in prevalences)
    assert max(prevalences) > 2.5 * min(prevalences)
    assert 0.07 <= np.concatenate([s.y for s in sites]).mean() <= 0.13
    assert 0.07 <= g.y.mean() <= 0.13


def test_outliers_are_a_few_rows(tmp_path: Path) -> None:
    sites, _, described = coalition(tmp_path, 1)
    columns = described["columns"]
    assert isinstance(columns, dict)
    # narrow, symmetric quantities (sodium: cv 2.5 %) never reach 2.5x their median but by a unit/entry error
    narrow = [j for j in range(FEATURES) if not columns[f"f{j}"]["skewed"] and columns[f"f{j}"]["spread"] <= 0.15]
    x = np.vstack([s.x for s in sites])[:, narrow]
    ratio = x / np.median(x, axis=0)
    wild = ratio > 2.5
    assert 0.005 <= wild.any(axis=1).mean() <= 0.05, wild.any(axis=1).mean()
    assert ratio[wild].max() <= 12.0 and ratio[~wild].max() < 2.0


def test_every_training_table_holds_both_classes_even_when_small(tmp_path: Path) -> None:
    synth_tabular(tmp_path, hospitals=5, train=4, test=3, global_size=2, features=30, prevalence=0.02)
    for i in range(5):
        y = read_table(tmp_path / hospital_name(i) / "train.csv").y
        assert sorted(y.tolist()) == [0.0, 0.0, 1.0, 1.0]
    assert sorted(read_table(tmp_path / GLOBAL_CSV).y.tolist()) == [0.0, 1.0]
    described = json.loads((tmp_path / "coalition.json").read_text())
    assert described["kind"] == "tabular" and described["prevalence"] == 0.02


def test_impossible_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a training table of 3 rows cannot hold at least 2 cases of each class"):
        synth_tabular(tmp_path, train=3)
    with pytest.raises(ConfigError, match="prevalence"):
        synth_tabular(tmp_path, prevalence=1.0)
    with pytest.raises(ConfigError, match="G needs at least 2 rows"):
        synth_tabular(tmp_path, global_size=1)


def test_split_table_gives_each_site_its_part_of_a_column_and_both_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(50, 10, 400), rng.exponential(3.0, 400)])
    y = (x[:, 1] + 0.05 * x[:, 0] + rng.normal(0, 1, 400) > 5.5).astype(np.float64)  # mostly CRP, a little age
    description = split_table(tmp_path, x, y, ["age", "crp"], by="age", prevalence=0.1, seed=1)
    g = read_table(tmp_path / "global.csv")
    assert g.columns == ("age", "crp") and len(g.y) == description["global"]
    sites = [read_table(tmp_path / f"hospital-{k}" / "train.csv") for k in (1, 2, 3)]
    assert all(set(t.y.tolist()) == {0.0, 1.0} for t in sites)
    ages = [float(np.median(t.x[:, 0])) for t in sites]
    assert ages == sorted(ages) and ages[2] - ages[0] > 10  # each site its own part of the range
    total = np.concatenate([g.y, *(t.y for t in sites)])
    assert abs(total.mean() - 0.1) < 0.02  # 1:9
    with pytest.raises(ConfigError, match="no column 'sex'"):
        split_table(tmp_path / "x", x, y, ["age", "crp"], by="sex")
    with pytest.raises(ConfigError, match="hospital-1's training rows hold one class only"):
        split_table(tmp_path / "y", x, (x[:, 0] > 60).astype(np.float64), ["age", "crp"], by="age", hospitals=8)
