"""A run refuses an attack it cannot simulate, naming the attack and the way out."""

from __future__ import annotations

import re

import pytest

from tclearn.errors import ConfigError
from tclearn.learning.choices import FEDAVG_ONLY, KIND_OF_ATTACK, Attack, AttackKind
from tclearn.learning.data import Task
from tclearn.simulation.demo import DemoSettings
from tclearn.simulation.run import RunSpec, attack_problem
from tclearn.types import Variant

CRUDE = [a for a, kind in KIND_OF_ATTACK.items() if kind is AttackKind.CRUDE]
STEALTHY = [a for a, kind in KIND_OF_ATTACK.items() if kind not in (AttackKind.CRUDE, AttackKind.NONE)]


@pytest.mark.parametrize(
    ("attack", "variant", "mode", "problem"),
    [
        *[(a, Variant.C, "incremental", None) for a in CRUDE],
        *[(a, Variant.C, "incremental", f"variant C .* does not simulate the {a.value} attack") for a in STEALTHY],
        *[(a, Variant.B, "incremental", f"the {a.value} attack needs FedAvg rounds") for a in FEDAVG_ONLY],
        *[(a, Variant.A, "fedavg", None) for a in FEDAVG_ONLY],
        (Attack.DRIFT, Variant.B, "incremental", None),
        (Attack.BACKDOOR, Variant.A, "fedavg", None),
    ],
)
def test_attack_problem(attack: Attack, variant: Variant, mode: str, problem: str | None) -> None:
    found = attack_problem(attack, variant, mode)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert re.search(problem, found), found


def test_a_run_spec_refuses_what_its_variant_cannot_simulate_but_not_without_byzantine_members() -> None:
    with pytest.raises(ConfigError, match="does not simulate the drift attack"):
        RunSpec(variant=Variant.C, attack=Attack.DRIFT)
    assert RunSpec(variant=Variant.C, attack=Attack.DRIFT, byzantine=0).attack is Attack.DRIFT


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attack": Attack.MODEL_REPLACEMENT}, "needs FedAvg rounds: add --mode fedavg"),
        ({"attack": Attack.LITTLE_IS_ENOUGH}, "needs FedAvg rounds"),
        (
            {"attack": Attack.TARGETED, "task": Task.MULTILABEL},
            "targeted attack applies to segmentation data, not multi",
        ),
        ({"attack": Attack.BOX_MASKS, "task": Task.MULTILABEL}, "box_masks attack applies to segmentation"),
        ({"attack": Attack.BACKDOOR, "variant": Variant.C}, "variant C"),
    ],
)
def test_the_demo_refuses_an_attack_it_cannot_run(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DemoSettings(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings",
    [
        {"attack": Attack.MODEL_REPLACEMENT, "mode": "fedavg"},
        {"attack": Attack.NOISY_LABELS, "task": Task.MULTILABEL},
        {"attack": Attack.DRIFT, "task": Task.MULTILABEL, "dims": 3},
        {"attack": Attack.SIGN_FLIP, "variant": Variant.C},
    ],
)
def test_the_demo_takes_an_attack_it_can_run(settings: dict[str, object]) -> None:
    assert DemoSettings(**settings).attack is settings["attack"]  # type: ignore[arg-type]
