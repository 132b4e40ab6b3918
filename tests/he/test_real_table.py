"""Variant C on a real table: the Wisconsin breast-cancer data (569 patients, 30 raw measurements from 0.001 to
4254, strongly correlated; scikit-learn ships them), malignant = 1, split into three sites by texture: a skewed
case mix (17 %, 39 % and 60 % malignant). Nothing is standardised beforehand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tclearn.he import encrypted as enc
from tclearn.he import model as plain
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.duties import agree_scaling, train_model
from tclearn.he.supervisor import Supervisor
from tclearn.learning.tables import read_table
from tclearn.learning.tabular import GLOBAL_CSV, split_table
from tests.he.conftest import Keys


@pytest.mark.slow
def test_the_encrypted_coalition_matches_plaintext_and_beats_every_site_alone(
    keys: Keys, supervisor: Supervisor, tmp_path: Path
) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    columns = [c.replace(" ", "_") for c in data.feature_names]
    split_table(tmp_path, data.data, (data.target == 0).astype(np.float64), columns, by="mean_texture", seed=0)
    g = read_table(tmp_path / GLOBAL_CSV)
    sites = [read_table(tmp_path / f"hospital-{k}" / "train.csv", columns=g.columns) for k in (1, 2, 3)]
    assert g.x.max(axis=0).max() / g.x.max(axis=0).min() > 1e4  # raw scales

    client = LocalSupervisorClient(supervisor, "0xFounder")
    spec = plain.ModelSpec("logreg", 30, scaling=agree_scaling(keys.public, g.columns, [t.x for t in sites], client))
    genesis = plain.init_weights(spec, seed=0)
    model, twin = enc.compact(keys.public, enc.encrypt_model(keys.public, spec, genesis)), genesis
    for _ in range(4):
        for t in sites:
            model = enc.compact(keys.public, train_model(keys.public, model, t.x, t.y, client, steps=3, lr=1.0))
            twin = plain.train(spec, twin, t.x, t.y, steps=3, lr=1.0)

    def on_g(weights: plain.Weights) -> float:
        return plain.accuracy(plain.logits(spec, weights, g.x), g.y)

    encrypted = on_g(enc.decrypt_model(keys.secret, model))
    assert encrypted == pytest.approx(on_g(twin), abs=0.01)
    alone = [on_g(plain.train(spec, genesis, t.x, t.y, 36, 1.0)) for t in sites]
    assert encrypted > max(alone) and encrypted > 0.9
