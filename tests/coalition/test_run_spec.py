"""The run description every simulation shares: which members attack, with what, and how the summary counts."""

from __future__ import annotations

import pytest

from tclearn.coalition.rounds import CandidateRow
from tclearn.errors import ConfigError
from tclearn.learning.choices import Attack
from tclearn.simulation.run import RunSpec, by_attack


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
