"""Aggregation of state dicts, as pure functions: FedAvg, coordinate-wise median, trimmed mean.

Inputs are never modified. Floating tensors are combined in float64 and cast back; integer buffers (e.g.
BatchNorm's `num_batches_tracked`) are combined the same way and rounded back to their integer type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from tclearn.errors import AggregationError

StateDict = dict[str, torch.Tensor]


def check_alike(states: Sequence[StateDict]) -> None:
    """`AggregationError` unless the state dicts are at least one and all have the same keys and shapes."""
    if not states:
        raise AggregationError("nothing to aggregate: no state dicts given")
    first = states[0]
    for n, state in enumerate(states[1:], start=1):
        if state.keys() != first.keys():
            diff = sorted(set(state) ^ set(first))
            raise AggregationError(f"state dict {n} has different keys from state dict 0: {', '.join(diff[:5])}")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise AggregationError(
                    f"state dict {n}: {key!r} has shape {tuple(tensor.shape)}, "
                    f"state dict 0 has {tuple(first[key].shape)}"
                )


def _combine(states: Sequence[StateDict], reduce: Callable[[torch.Tensor], torch.Tensor]) -> StateDict:
    check_alike(states)
    out: StateDict = {}
    for key, ref in states[0].items():
        stacked = torch.stack([s[key].detach().to("cpu", torch.float64) for s in states])
        value = reduce(stacked)
        if ref.dtype.is_floating_point:
            out[key] = value.to(ref.dtype)
        elif ref.dtype == torch.bool:
            out[key] = value >= 0.5
        else:
            out[key] = torch.round(value).to(ref.dtype)
    return out


def fedavg(updates: Sequence[tuple[StateDict, int]]) -> StateDict:
    """FedAvg: the mean of the state dicts weighted by each one's number of training samples."""
    if not updates:
        raise AggregationError("nothing to aggregate: no updates given")
    weights = [n for _, n in updates]
    if any(not isinstance(w, int) or w < 0 for w in weights) or sum(weights) <= 0:
        raise AggregationError(f"sample counts must be non-negative integers with a positive sum, got {weights}")
    total = float(sum(weights))
    shares = torch.tensor([w / total for w in weights], dtype=torch.float64)

    def weighted(stacked: torch.Tensor) -> torch.Tensor:
        return torch.tensordot(shares, stacked, dims=1)

    return _combine([s for s, _ in updates], weighted)


def median(states: Sequence[StateDict]) -> StateDict:
    """Coordinate-wise median (the mean of the two middle values for an even count)."""

    def reduce(stacked: torch.Tensor) -> torch.Tensor:
        ordered, n = torch.sort(stacked, dim=0).values, stacked.shape[0]
        return ordered[(n - 1) // 2 : n // 2 + 1].mean(dim=0)

    return _combine(states, reduce)


def trimmed_mean(states: Sequence[StateDict], trim: float = 0.2) -> StateDict:
    """Coordinate-wise mean after dropping the `floor(trim * n)` smallest and largest values."""
    if not 0.0 <= trim < 0.5:
        raise AggregationError(f"trim must be in [0, 0.5), got {trim}")
    k = math.floor(trim * len(states))

    def reduce(stacked: torch.Tensor) -> torch.Tensor:
        ordered = torch.sort(stacked, dim=0).values
        return ordered[k : len(states) - k].mean(dim=0)

    return _combine(states, reduce)
