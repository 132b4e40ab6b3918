"""The run description every simulation shares: which members attack with what (a run refuses an attack it
cannot simulate, naming the attack and the way out), and how the summary counts them."""

from __future__ import annotations

import re

import pytest

from tclearn.coalition.rounds import CandidateRow
from tclearn.errors import ConfigError
from tclearn.learning.choices import FEDAVG_ONLY, KIND_OF_ATTACK, Attack, AttackKind
from tclearn.learning.data import Task
from tclearn.simulation.demo import DemoSettings
from tclearn.simulation.run import RunSpec, attack_problem, by_attack
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


@pytest.mark.parametrize(
    ("members", "byzantine", "attack", "expected"),
    [
        (4, 1, Attack.DRIFT, ["none", "none", "none", "drift"]),
        (4, 0, Attack.SIGN_FLIP, ["none"] * 4),
        (7, 2, (Attack.DRIFT, Attack.BACKDOOR), ["none"] * 5 + ["drift", "backdoor"]),
        (7, 3, ("targeted", "noisy_labels"), ["none"] * 4 + ["targeted", "noisy_labels", "targeted"]),
    ],
)
def test_the_byzantine_members_take_the_attacks_in_turn(
    members: int, byzantine: int, attack: Attack | tuple[Attack, ...], expected: list[str]
) -> None:
    spec = RunSpec(members=members, byzantine=byzantine, attack=attack)
    assert [spec.attack_at(i).value for i in range(members)] == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"byzantine": 1, "attack": ("drift", "backdoor")}, "2 attacks for 1 Byzantine members"),
        ({"byzantine": 1, "attack": "poison"}, "unknown attack in poison"),
        ({"byzantine": 1, "attack": "none"}, "need an --attack other than 'none'"),
        ({"byzantine": 2, "attack": ()}, "at least one --attack"),
    ],
)
def test_a_run_that_cannot_be_carried_out_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunSpec(members=4, **settings)  # type: ignore[arg-type]


def row(attack: str, state: str, votes: int = 2) -> CandidateRow:
    return CandidateRow(1, "h", attack != "none", attack, "g", state, approvals=votes)


def test_the_summary_counts_each_attack_by_outcome() -> None:
    rows = [
        row("drift", "rejected", votes=0),  # refused by the general: no vote was cast
        row("drift", "rejected"),
        row("drift", "committed"),
        row("none", "committed"),
        row("none", "open"),
        CandidateRow(None, "h", False, "none", error="training failed"),  # no candidate: not counted
    ]
    assert by_attack(rows) == {
        "drift": {"submitted": 3, "refused": 1, "rejected": 1, "committed": 1, "open": 0},
        "none": {"submitted": 2, "refused": 0, "rejected": 0, "committed": 1, "open": 1},
    }
