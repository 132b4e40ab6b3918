"""The acceptance policy's per-stratum checks and the verdicts a vote's evidence shows, by table."""

from __future__ import annotations

import pytest

from tclearn.coalition.policy import AcceptancePolicy, Scores, Stratum
from tclearn.records import StratumVerdict

POLICY = AcceptancePolicy(tolerance_stratum=0.15, min_stratum=8)


def scores(*strata: tuple[str, int, float]) -> Scores:
    """Scores of 0.8 on G and L, with these G strata `(name, samples, score)`."""
    return Scores(0.8, 0.8, tuple(Stratum("G", name, samples, score) for name, samples, score in strata))


HEAD = scores(("finding:small", 12, 0.7), ("finding:large", 8, 0.9), ("finding:none", 3, 1.0))


def verdict(
    name: str, samples: int, candidate: float | None, head: float | None, judged: bool, ok: bool
) -> StratumVerdict:
    return StratumVerdict("G", name, samples, candidate, head, 0.15, judged, ok)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (  # within tolerance everywhere; the stratum of 3 images is shown but not judged
            scores(("finding:small", 12, 0.56), ("finding:large", 8, 0.9), ("finding:none", 3, 0.0)),
            (
                verdict("finding:small", 12, 0.56, 0.7, True, True),
                verdict("finding:large", 8, 0.9, 0.9, True, True),
                verdict("finding:none", 3, 0.0, 1.0, False, True),
            ),
        ),
        (  # small findings given up
            scores(("finding:small", 12, 0.5), ("finding:large", 8, 0.95), ("finding:none", 3, 1.0)),
            (
                verdict("finding:small", 12, 0.5, 0.7, True, False),
                verdict("finding:large", 8, 0.95, 0.9, True, True),
                verdict("finding:none", 3, 1.0, 1.0, False, True),
            ),
        ),
        (  # measured on other data: a stratum missing, one of another size, one the head lacks
            scores(("finding:small", 11, 0.7), ("finding:none", 3, 1.0), ("finding:medium", 9, 0.8)),
            (
                verdict("finding:small", 12, 0.7, 0.7, False, False),
                verdict("finding:large", 8, None, 0.9, False, False),
                verdict("finding:none", 3, 1.0, 1.0, False, True),
                verdict("finding:medium", 9, 0.8, None, False, False),
            ),
        ),
    ],
)
def test_every_stratum_is_compared_with_the_head(candidate: Scores, expected: tuple[StratumVerdict, ...]) -> None:
    assert POLICY.stratum_verdicts(candidate, HEAD) == expected


def test_an_unscored_candidate_has_no_stratum_verdicts() -> None:
    assert POLICY.stratum_verdicts(None, HEAD) == ()


@pytest.mark.parametrize(
    ("candidate", "approved", "reason"),
    [
        (
            scores(("finding:small", 12, 0.6), ("finding:large", 8, 0.8), ("finding:none", 3, 0.1)),
            True,
            "every stratum",
        ),
        (
            scores(("finding:small", 12, 0.5), ("finding:large", 8, 0.9), ("finding:none", 3, 1.0)),
            False,
            "G finding:small 0.500 is 0.200 below the head's 0.700 (tolerance 0.15)",
        ),
        (
            scores(("finding:small", 12, 0.7), ("finding:none", 3, 1.0)),
            False,
            "the strata were not measured on the same data as the head's: G finding:large in one only",
        ),
        (
            Scores(0.8, 0.8),
            False,
            "G finding:large in one only, G finding:none in one only, G finding:small in one only",
        ),
    ],
)
def test_a_candidate_worse_on_one_stratum_only_is_rejected_naming_it(
    candidate: Scores, approved: bool, reason: str
) -> None:
    ok, why = POLICY.verdict(candidate, HEAD)
    assert ok is approved and reason in why
    assert candidate.global_ == HEAD.global_  # the mean held
