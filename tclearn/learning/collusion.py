"""Coordinated Byzantine contributions to a FedAvg round, as pure functions: "a little is enough" (Baruch,
Baruch and Goldberg, NeurIPS 2019).

Every colluder submits the same model: per coordinate, the mean of the honest contributions less `z` of their
standard deviations — small enough to stay inside the spread that robust aggregators (median, trimmed mean)
keep, and shifted the same way by every colluder so that the shift survives them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import torch

from tclearn.errors import ConfigError
from tclearn.learning.aggregate import check_alike

StateDict = dict[str, torch.Tensor]


def z_of(members: int, byzantine: int) -> float:
    """The paper's z for `members` contributors of whom `byzantine` collude: s = floor(n/2 + 1) - m honest
    contributors must sit on the colluders' side, z = the standard normal quantile of (n - s) / n."""
    if not 0 < byzantine < members:
        raise ConfigError(f"collusion needs 1 to members - 1 Byzantine contributors, got {byzantine} of {members}")
    s = math.floor(members / 2 + 1) - byzantine
    if s < 1:  # the colluders are a majority: no honest contributor needs to be won over
        raise ConfigError(f"{byzantine} colluders of {members} are a majority; 'a little is enough' does not apply")
    return NormalDist().inv_cdf((members - s) / members)


def little_is_enough(states: Sequence[StateDict], z: float) -> StateDict:
    """Per floating coordinate, mean - z * std of `states` (population std, float64, cast back); other tensors
    (integer buffers) are the first state's."""
    check_alike(states)
    out: StateDict = {}
    for key, ref in states[0].items():
        if not ref.dtype.is_floating_point:
            out[key] = ref.clone()
            continue
        stacked = torch.stack([s[key].detach().to("cpu", torch.float64) for s in states])
        mean, std = stacked.mean(dim=0), stacked.std(dim=0, correction=0)
        out[key] = (mean - z * std).to(ref.dtype)
    return out
