"""The size of an update, as a pure function: how far a model moved from its parent, relative to the parent.

Measured on floating tensors only (integer buffers such as BatchNorm's `num_batches_tracked` count steps, not
weights), in float64: `||child - parent|| / ||parent||` over all floating tensors taken as one vector. The
general bounds it (`AcceptancePolicy.max_update`), and so does a FedAvg round's aggregator per contribution.
"""

from __future__ import annotations

import math

import torch

from tclearn.errors import IntegrityError

StateDict = dict[str, torch.Tensor]


def update_norm(parent: StateDict, child: StateDict) -> float:
    """`||child - parent|| / ||parent||` over the floating tensors (L2, float64); `IntegrityError` naming the key
    where the two are not the same model. Non-finite weights, or a zero parent and a
    moved child, give infinity."""
    if parent.keys() != child.keys():
        differ = sorted(parent.keys() ^ child.keys())
        raise IntegrityError(f"the update does not have its parent's tensors: {', '.join(differ[:5])} in one only")
    moved = size = 0.0
    for key, p in parent.items():
        c = child[key]
        if p.shape != c.shape:
            raise IntegrityError(f"{key!r} has shape {tuple(c.shape)} in the update, {tuple(p.shape)} in its parent")
        if p.dtype.is_floating_point != c.dtype.is_floating_point:
            raise IntegrityError(f"{key!r} is {c.dtype} in the update, {p.dtype} in its parent")
        if not p.dtype.is_floating_point:
            continue
        p64, c64 = p.detach().to("cpu", torch.float64), c.detach().to("cpu", torch.float64)
        moved += float(torch.sum((c64 - p64) ** 2))
        size += float(torch.sum(p64**2))
    if not math.isfinite(moved) or not math.isfinite(size):
        return math.inf  # a non-finite weight is beyond every bound
    if size == 0.0:
        return 0.0 if moved == 0.0 else math.inf
    return math.sqrt(moved) / math.sqrt(size)
