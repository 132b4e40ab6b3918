"""The acceptance policy, by table."""

from __future__ import annotations

import json

import pytest

from tclearn.coalition.policy import AcceptancePolicy, Scores, Stratum
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


# ---- the whole policy: drift, strata, update size, its record -------------------------------------------------

POLICY = AcceptancePolicy()  # 0.03 G, 0.10 L, drift 0.05, strata 0.15 from 8 samples, update 2.0


def strata(small: float, large: float, *, small_n: int = 12, where: str = "G") -> tuple[Stratum, ...]:
    return (Stratum(where, "finding:small", small_n, small), Stratum(where, "finding:large", 12, large))


STRATIFIED_HEAD = Scores(0.80, 0.70, strata(0.60, 0.90))


@pytest.mark.parametrize(
    ("candidate", "best", "approve", "named"),
    [
        (Scores(0.80, 0.70, strata(0.60, 0.90)), 0.80, True, []),
        (Scores(0.78, 0.70, strata(0.60, 0.90)), 0.82, True, []),  # 0.04 below the best: within 0.05
        (Scores(0.78, 0.70, strata(0.60, 0.90)), 0.84, False, ["best committed model's 0.840"]),  # drifted
        (Scores(0.80, 0.70, strata(0.44, 0.99)), 0.80, False, ["G finding:small 0.440 is 0.160 below"]),
        (Scores(0.80, 0.70, strata(0.46, 0.90)), 0.80, True, []),  # within the stratum tolerance
        # a stratum too small to judge is reported, not judged
        (
            Scores(0.80, 0.70, strata(0.0, 0.90, small_n=7)),
            0.80,
            False,  # ... but it was measured on other data than the head's: not comparable
            ["the strata were not measured on the same data", "G finding:small of another size"],
        ),
        (Scores(0.80, 0.70, strata(0.60, 0.90)[1:]), 0.80, False, ["G finding:small in one only"]),
        (Scores(0.80, 0.70, strata(0.60, 0.90, where="L")), 0.80, False, ["L finding:small in one only"]),
        (Scores(0.70, 0.50, strata(0.40, 0.90)), 0.80, False, ["G 0.700", "L 0.500", "G finding:small"]),
    ],
)
def test_every_check_of_the_policy_is_named(candidate: Scores, best: float, approve: bool, named: list[str]) -> None:
    verdict, reason = POLICY.verdict(candidate, STRATIFIED_HEAD, best)
    assert verdict is approve
    assert all(n in reason for n in named), reason


def test_a_small_stratum_is_not_judged() -> None:
    head = Scores(0.8, 0.7, strata(0.6, 0.9, small_n=7))
    assert POLICY.accepts(Scores(0.8, 0.7, strata(0.0, 0.9, small_n=7)), head)
    assert not AcceptancePolicy(min_stratum=7).accepts(Scores(0.8, 0.7, strata(0.0, 0.9, small_n=7)), head)


def test_the_best_of_the_lineage_is_never_below_the_head() -> None:
    # a validator that measured the lineage's best lower than the head judges against the head
    assert not POLICY.accepts(Scores(0.74, 0.7), Scores(0.80, 0.7), best_global=0.5)


@pytest.mark.parametrize(
    ("measured", "declared", "problem"),
    [
        (0.3, 0.3, None),
        (0.3, 0.30000001, None),
        (0.3, None, "declares no update size"),
        (0.3, 0.1, "declares an update size of 0.1, but it is 0.3"),
        (4.0, 4.0, "the update is 4 of its parent's norm, beyond the coalition's bound 2"),
    ],
)
def test_the_update_size_check(measured: float, declared: float | None, problem: str | None) -> None:
    found = POLICY.update_problem(measured, declared)
    assert found == problem if problem is None else problem in (found or "")


def test_no_update_bound_when_it_is_zero() -> None:
    assert AcceptancePolicy(max_update=0).update_problem(50.0, 50.0) is None


def test_the_policy_is_a_record_with_one_hash() -> None:
    assert AcceptancePolicy.parse(POLICY.encode()) == POLICY
    assert AcceptancePolicy(max_drift=0.04).sha256() != POLICY.sha256()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_drift", 1.5),
        ("tolerance_stratum", -0.1),
        ("min_stratum", 0),
        ("max_update", -1.0),
        ("aggregator", "mean"),
    ],
)
def test_a_stored_policy_out_of_range_is_refused_by_name(field: str, value: object) -> None:
    raw = POLICY.to_json() | {field: value}
    with pytest.raises(ConfigError, match=field):
        AcceptancePolicy.parse(json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("change", "candidate", "approve"),
    [
        (0.0, 0.79, True),  # no history: the head's tolerance alone
        (-0.02, 0.79, True),  # -0.03 in all: within 0.05
        (-0.03, 0.77, False),  # -0.06 in all, though within 0.03 of the head and 0.05 of the best
        (0.10, 0.78, True),  # a proposer whose work raised G may lose a little
        (-0.04, 0.82, True),  # an improvement is never held against it
    ],
)
def test_a_proposer_may_not_walk_g_down_beyond_the_drift_bound(change: float, candidate: float, approve: bool) -> None:
    verdict, reason = POLICY.verdict(Scores(candidate, 0.7), Scores(0.8, 0.7), 0.8, proposer_change=change)
    assert verdict is approve
    assert approve or "its proposer's committed increments and this one change G by" in reason
