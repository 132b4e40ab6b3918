"""Byzantine behaviours do what their names say."""

from __future__ import annotations

import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.attacks import (
    DRIFT_PROBES,
    Attack,
    attack_weights,
    drift,
    flip_labels,
    gaussian_noise,
    largest_mix,
    lazy,
    replacement,
    sign_flip,
)
from tclearn.learning.data import ImageData, Task
from tclearn.learning.samples import Samples

PARENT = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(2)}
CHILD = {"w": torch.tensor([1.5, 0.5]), "n": torch.tensor(3)}


def test_sign_flip_reverses_and_scales_the_update() -> None:
    assert torch.allclose(sign_flip(PARENT, CHILD)["w"], torch.tensor([-4.0, 6.0]))


def test_lazy_returns_the_parent() -> None:
    out = lazy(PARENT)
    assert torch.equal(out["w"], PARENT["w"]) and out["w"] is not PARENT["w"]


def test_noise_is_seeded_and_keeps_int_buffers() -> None:
    a, b = gaussian_noise(CHILD, 0.1, seed=1), gaussian_noise(CHILD, 0.1, seed=1)
    assert torch.equal(a["w"], b["w"]) and not torch.equal(a["w"], CHILD["w"])
    assert torch.equal(a["n"], CHILD["n"])


@pytest.mark.parametrize("attack", list(Attack))
def test_every_attack_keeps_the_layout(attack: Attack) -> None:
    out = attack_weights(attack, PARENT, CHILD, probe=lambda w: float(w["w"].sum()), tolerance=0.03)
    assert out.keys() == CHILD.keys() and all(out[k].shape == CHILD[k].shape for k in out)
    assert torch.equal(out["n"], PARENT["n"] if attack is Attack.LAZY else CHILD["n"])  # integer buffers kept


@pytest.mark.parametrize(
    "attack", [Attack.NONE, Attack.LITTLE_IS_ENOUGH, Attack.BACKDOOR, Attack.TARGETED, Attack.NOISY_LABELS]
)
def test_data_attacks_and_the_fedavg_rounds_collusion_submit_the_increment(attack: Attack) -> None:
    assert attack_weights(attack, PARENT, CHILD) is CHILD


@pytest.mark.parametrize(
    ("boost", "expected"),
    [(4.0, [3.0, -1.0]), (1.0, [1.5, 0.5]), (7.0, [4.5, -2.5])],  # parent 1 + boost * (+-0.5)
)
def test_model_replacement_boosts_the_update(boost: float, expected: list[float]) -> None:
    assert replacement(PARENT, CHILD, boost)["w"].tolist() == expected
    assert attack_weights(Attack.MODEL_REPLACEMENT, PARENT, CHILD, boost=boost)["w"].tolist() == expected
    assert attack_weights(Attack.MODEL_REPLACEMENT, PARENT, CHILD)["w"].tolist() == [3.0, -1.0]  # 4 by default


@pytest.mark.parametrize(
    ("edge", "evaluations", "expected"),
    [
        (0.3, 7, 19 / 64),  # the largest multiple of 1/64 not above the edge
        (0.3, 3, 0.25),
        (1.0, 7, 1.0),  # t = 1 passes: one evaluation
        (2.0, 7, 1.0),
        (0.0, 7, 0.0),  # nothing but t = 0 passes
        (0.5, 1, 0.0),  # one evaluation: t = 1 only
    ],
)
def test_the_bisection_finds_the_largest_mix_within_the_floor(edge: float, evaluations: int, expected: float) -> None:
    calls: list[float] = []

    def score(t: float) -> float:  # decreasing in t; passes the floor 0.5 up to t = edge
        calls.append(t)
        return 0.5 + (edge - t) if t <= edge else 0.4 - (t - edge)

    assert largest_mix(score, floor=0.5, evaluations=evaluations) == expected
    assert len(calls) <= evaluations and calls[0] == 1.0
    assert expected == 0.0 or expected in calls  # the answer was evaluated and passed


@pytest.mark.parametrize(("tolerance", "margin"), [(0.03, 0.8), (0.1, 0.5), (0.01, 1.0)])
def test_drift_costs_the_probe_less_than_the_tolerance_and_not_much_less(tolerance: float, margin: float) -> None:
    parent = {"w": torch.tensor([1.0, 1.0])}
    child = {"w": torch.tensor([1.05, 1.0])}  # bad = parent - 2 * (child - parent): w0 = 0.9

    def score(w: dict[str, torch.Tensor]) -> float:  # 1 at the parent, falling linearly as w0 falls
        score.calls += 1  # type: ignore[attr-defined]
        return 1.0 - float(1.0 - w["w"][0])

    score.calls = 0  # type: ignore[attr-defined]
    out = drift(parent, child, score, tolerance, margin)
    lost = 1.0 - score(out)
    assert margin * tolerance - 0.1 / 64 <= lost <= margin * tolerance + 1e-9
    assert score.calls == DRIFT_PROBES + 1  # the parent, seven mixes, and this test's own call


def test_drift_needs_a_probe_and_a_tolerance() -> None:
    with pytest.raises(ConfigError, match="drift attack needs a probe"):
        attack_weights(Attack.DRIFT, PARENT, CHILD)


def test_unknown_attack() -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        attack_weights("bribe", PARENT, CHILD)


def _targets(data: Samples) -> torch.Tensor:
    return torch.stack([data.dataset()[i][1] for i in range(len(data))])


def test_label_flip() -> None:
    seg = ImageData(Task.SEGMENTATION, torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]]), ("a",))
    assert _targets(flip_labels(seg)).sum().item() == 1.0
    cls = ImageData(Task.CLASSIFICATION, torch.zeros(3, 2), torch.tensor([0, 1, 2]), ("a", "b", "c"), ("x", "y", "z"))
    assert _targets(flip_labels(cls)).tolist() == [2, 1, 0]
    assert _targets(flip_labels(cls).subset([0])).tolist() == [2]
    multi = ImageData(Task.MULTILABEL, torch.zeros(2, 1, 4, 4), torch.tensor([[0.0, 1.0], [1.0, 1.0]]), ("a", "b"))
    assert _targets(flip_labels(multi)).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    unnamed = ImageData(Task.CLASSIFICATION, torch.zeros(2, 2), torch.tensor([0, 1]), ("a", "b"))
    with pytest.raises(ConfigError, match="does not name its classes"):
        flip_labels(unnamed)
