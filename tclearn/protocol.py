"""Pure protocol rules: quorum thresholds and the fixed-point encoding of scores.

These mirror Coalition.sol exactly; tests check the contract against them.
"""

from __future__ import annotations

SCORE_SCALE = 1_000_000
GENESIS = 0  # the contract's model 0, committed when the coalition was deployed
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_committed(approvals: int, eligible: int) -> bool:
    """Committed as soon as at least two thirds of the eligible validators approve."""
    return eligible > 0 and approvals * 3 >= eligible * 2


def is_rejected(rejections: int, eligible: int) -> bool:
    """Rejected as soon as two thirds of the eligible validators can no longer approve."""
    return rejections * 3 > eligible


def approvals_needed(eligible: int) -> int:
    """The smallest number of approvals that commits a candidate with `eligible` voters."""
    return -(-2 * eligible // 3)


def rejections_needed(eligible: int) -> int:
    """The smallest number of rejections that rejects a candidate with `eligible` voters."""
    return eligible // 3 + 1


def to_fixed(score: float) -> int:
    """A score as the contract stores it: int64, scaled by 1e6, rounded half away from zero."""
    if score != score or score in (float("inf"), float("-inf")):
        raise ValueError(f"score must be finite, got {score}")
    scaled = round(score * SCORE_SCALE)
    if not INT64_MIN <= scaled <= INT64_MAX:
        raise ValueError(f"score {score} does not fit int64 after scaling by {SCORE_SCALE}")
    return scaled


def from_fixed(value: int) -> float:
    return value / SCORE_SCALE
