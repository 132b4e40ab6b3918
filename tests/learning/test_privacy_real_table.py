"""DP-SGD on a real table: the Wisconsin breast-cancer data (569 patients, 30 correlated measurements spanning
0.001-4254, standardised with the training rows' statistics; scikit-learn ships them). A DP increment at epsilon 3
must stay close to the same increment trained without DP, and clearly above the majority class."""

from __future__ import annotations

import numpy as np
import torch

from tclearn.learning.data import ImageData, Task
from tclearn.learning.evaluate import evaluate
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.privacy import Accountant, DPConfig, PrivacyUnit, calibrated
from tclearn.learning.train import Optimiser, TrainConfig, train_increment


def _split() -> tuple[ImageData, ImageData]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data, (data.target == 0).astype(np.int64)  # malignant = 1
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:400], order[400:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    scaled = (x - mean) / std

    def part(rows: np.ndarray, name: str) -> ImageData:
        return ImageData(
            Task.CLASSIFICATION,
            torch.tensor(scaled[rows], dtype=torch.float32),
            torch.tensor(y[rows]),
            tuple(f"{name}-{i}" for i in rows),
            classes=("0", "1"),
        )

    return part(train, "train"), part(test, "test")


def test_a_dp_increment_on_a_real_table_stays_close_to_the_non_private_one() -> None:
    train, test = _split()
    config = ModelConfig("fully_connected", 1, 30, 2, {"hidden_channels": [16]})
    torch.manual_seed(0)
    parent = build_model(config)
    plain = TrainConfig(epochs=10, batch_size=40, lr=0.05, optimiser=Optimiser.SGD, seed=0)
    dp = calibrated(
        3.0,
        None,
        max_grad_norm=1.0,
        delta=1e-5,
        accountant=Accountant.RDP,
        unit=PrivacyUnit.SAMPLE,
        batch_size=40,
        epochs=10,
        units=len(train),
    )
    private = TrainConfig(
        epochs=10,
        batch_size=40,
        lr=0.05,
        optimiser=Optimiser.SGD,
        seed=0,
        dp=DPConfig(dp.noise_multiplier, dp.max_grad_norm, dp.delta, secret_seed=1),
    )
    scores = {}
    for name, training in (("plain", plain), ("dp", private)):
        model = build_model(config)
        increment = train_increment(parent, train, training)
        model.load_state_dict(increment.weights)
        scores[name] = evaluate(model, test).score
        if name == "dp":
            assert increment.privacy is not None and increment.privacy.epsilon <= 3.0
    majority = max(float(test.targets.float().mean()), 1 - float(test.targets.float().mean()))
    assert scores["plain"] > 0.9
    assert scores["dp"] > majority + 0.15, scores
    assert scores["dp"] >= scores["plain"] - 0.1, scores
