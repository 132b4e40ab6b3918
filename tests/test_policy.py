"""The acceptance policy, by table."""

from __future__ import annotations

import pytest

from tclearn.coalition.policy import AcceptancePolicy, Scores
from tclearn.errors import ConfigError

HEAD = Scores(0.80, 0.70)


@pytest.mark.parametrize(
    ("candidate", "accepted"),
    [
        (Scores(0.85, 0.75), True),  # better on both
        (Scores(0.80, 0.70), True),  # equal
        (Scores(0.791, 0.681), True),  # worse, within both tolerances
        (Scores(0.789, 0.75), False),  # worse than G tolerance allows
        (Scores(0.85, 0.679), False),  # worse than L tolerance allows
        (Scores(0.10, 0.10), False),  # a poisoned model
    ],
)
def test_policy_table(candidate: Scores, accepted: bool) -> None:
    assert AcceptancePolicy(0.01, 0.02).accepts(candidate, HEAD) is accepted


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_tolerance_is_checked(bad: float) -> None:
    with pytest.raises(ConfigError, match="tolerance_global"):
        AcceptancePolicy(tolerance_global=bad)
