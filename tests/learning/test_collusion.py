"""'A little is enough' (`tclearn.learning.collusion`): the paper's z and the coordinated model, by table."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch

from tclearn.errors import AggregationError, ConfigError
from tclearn.learning.collusion import little_is_enough, z_of


@pytest.mark.parametrize(
    ("members", "byzantine", "quantile"),
    [
        (4, 1, 2 / 4),  # s = floor(3) - 1 = 2: z = 0, the honest mean
        (10, 2, 6 / 10),  # s = 6 - 2 = 4
        (50, 12, 36 / 50),  # s = 26 - 12 = 14
        (7, 2, 5 / 7),  # s = floor(4.5) - 2 = 2
    ],
)
def test_z_of(members: int, byzantine: int, quantile: float) -> None:
    assert z_of(members, byzantine) == pytest.approx(NormalDist().inv_cdf(quantile))


@pytest.mark.parametrize(("members", "byzantine"), [(4, 0), (4, 4), (4, 3), (3, 2)])
def test_z_of_refuses_what_is_not_a_minority_collusion(members: int, byzantine: int) -> None:
    with pytest.raises(ConfigError, match=f"{byzantine}"):
        z_of(members, byzantine)


STATES = [
    {"w": torch.tensor([1.0, 10.0]), "n": torch.tensor(3)},
    {"w": torch.tensor([3.0, 10.0]), "n": torch.tensor(5)},
]


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (0.0, [2.0, 10.0]),  # the mean
        (1.0, [1.0, 10.0]),  # mean 2, population std 1; no spread, no shift
        (-2.0, [4.0, 10.0]),
    ],
)
def test_little_is_enough(z: float, expected: list[float]) -> None:
    forged = little_is_enough(STATES, z)
    assert torch.allclose(forged["w"], torch.tensor(expected)) and forged["w"].dtype == torch.float32
    assert forged["n"] == 3  # integer buffers: the first state's
    assert torch.equal(STATES[0]["w"], torch.tensor([1.0, 10.0]))  # inputs untouched


def test_little_is_enough_refuses_nothing_or_mismatching_states() -> None:
    with pytest.raises(AggregationError, match="nothing to aggregate"):
        little_is_enough([], 1.0)
    with pytest.raises(AggregationError, match="'w' has shape"):
        little_is_enough([STATES[0], {"w": torch.zeros(3), "n": torch.tensor(1)}], 1.0)
