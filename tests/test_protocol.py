"""The pure protocol rules: quorum thresholds and fixed-point scores."""

from __future__ import annotations

import math

import pytest

from tclearn.protocol import (
    approvals_needed,
    from_fixed,
    is_committed,
    is_rejected,
    rejections_needed,
    to_fixed,
)

# eligible -> (approvals that commit, rejections that reject), worked out by hand from 2/3
QUORUM = {
    1: (1, 1),
    2: (2, 1),
    3: (2, 2),
    4: (3, 2),
    5: (4, 2),
    6: (4, 3),
    7: (5, 3),
    8: (6, 3),
    9: (6, 4),
    10: (7, 4),
}


@pytest.mark.parametrize(("eligible", "expected"), QUORUM.items())
def test_quorum_table(eligible: int, expected: tuple[int, int]) -> None:
    approvals, rejections = expected
    assert (approvals_needed(eligible), rejections_needed(eligible)) == expected
    assert is_committed(approvals, eligible) and not is_committed(approvals - 1, eligible)
    assert is_rejected(rejections, eligible) and not is_rejected(rejections - 1, eligible)
    # the two outcomes never overlap: whoever can still commit has not been rejected
    assert approvals + rejections == eligible + 1


def test_nobody_eligible_never_commits() -> None:
    assert not is_committed(0, 0)


@pytest.mark.parametrize(("score", "fixed"), [(0.0, 0), (0.8123456, 812346), (-1.5, -1_500_000), (1.0, 1_000_000)])
def test_fixed_point_round_trip(score: float, fixed: int) -> None:
    assert to_fixed(score) == fixed
    assert math.isclose(from_fixed(fixed), score, abs_tol=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e13])
def test_fixed_point_refuses_what_int64_cannot_hold(bad: float) -> None:
    with pytest.raises(ValueError, match="score"):
        to_fixed(bad)
