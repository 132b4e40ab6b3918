"""Aggregation maths on plain tensors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tclearn.errors import AggregationError
from tclearn.learning.aggregate import fedavg, median, trimmed_mean


def sd(*values: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(list(values)), "n": torch.tensor(3)}


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        ([(sd(1.0, 2.0), 1)], [1.0, 2.0]),
        ([(sd(0.0, 0.0), 1), (sd(4.0, 8.0), 1)], [2.0, 4.0]),
        ([(sd(0.0, 0.0), 3), (sd(4.0, 8.0), 1)], [1.0, 2.0]),
        ([(sd(1.0, 1.0), 10), (sd(100.0, 100.0), 0)], [1.0, 1.0]),
    ],
)
def test_fedavg_weights_by_samples(updates: list, expected: list[float]) -> None:
    assert torch.allclose(fedavg(updates)["w"], torch.tensor(expected))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0, 3.0], 2.0),
        ([1.0, 2.0, 1000.0], 2.0),  # one outlier does not move the median
        ([1.0, 2.0, 3.0, 4.0], 2.5),  # even count: mean of the two middle values
        ([-1e9, 5.0, 5.0, 6.0, 1e9], 5.0),
    ],
)
def test_median_ignores_outliers(values: list[float], expected: float) -> None:
    assert median([sd(v) for v in values])["w"].item() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "trim", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 100.0], 0.2, 3.0),  # drops 1 and 100
        ([1.0, 2.0, 3.0, 4.0, 100.0], 0.0, 22.0),  # plain mean
        ([0.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 1e6], 0.1, 10.0),
    ],
)
def test_trimmed_mean(values: list[float], trim: float, expected: float) -> None:
    assert trimmed_mean([sd(v) for v in values], trim)["w"].item() == pytest.approx(expected)


def test_integer_buffers_keep_dtype_and_inputs_untouched() -> None:
    a, b = sd(1.0), sd(3.0)
    out = fedavg([(a, 1), (b, 1)])
    assert out["n"].dtype == torch.int64 and out["n"].item() == 3
    assert a["w"].item() == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: fedavg([]),
        lambda: median([]),
        lambda: fedavg([(sd(1.0), 1), ({"x": torch.zeros(1)}, 1)]),
        lambda: median([sd(1.0), sd(1.0, 2.0)]),
        lambda: fedavg([(sd(1.0), 0)]),
        lambda: trimmed_mean([sd(1.0)], 0.5),
    ],
)
def test_bad_inputs_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AggregationError):
        call()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=1, max_size=7))
def test_robust_aggregates_stay_within_the_inputs(rows: list[list[float]]) -> None:
    states = [{"w": torch.tensor(r, dtype=torch.float64)} for r in rows]
    stacked = torch.stack([s["w"] for s in states])
    low, high = stacked.min(0).values - 1e-6, stacked.max(0).values + 1e-6
    for out in (median(states), trimmed_mean(states, 0.2), fedavg([(s, 1) for s in states])):
        assert bool(((out["w"] >= low) & (out["w"] <= high)).all())


@given(st.lists(st.floats(-100, 100), min_size=2, max_size=2), st.integers(1, 5))
def test_identical_states_aggregate_to_themselves(values: list[float], copies: int) -> None:
    state = {"w": torch.tensor(values, dtype=torch.float64)}
    for out in (median([state] * copies), trimmed_mean([state] * copies), fedavg([(state, 3)] * copies)):
        assert torch.allclose(out["w"], state["w"])
