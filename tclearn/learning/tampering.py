"""What a model taken out of the coalition may go through before it is found: pruning and quantisation (pure
functions of the weights; fine-tuning is `tclearn.learning.train.train_increment`). Watermarks and fingerprints
are measured after them (`bench/watermark.py`, `tclearn.learning.watermark`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tclearn.errors import ConfigError

StateDict = dict[str, torch.Tensor]


def magnitude_prune(weights: Mapping[str, torch.Tensor], fraction: float) -> StateDict:
    """Every weight tensor (floating, two or more dimensions) with its `fraction` of smallest magnitudes set to zero;
    biases, norms and buffers as they were."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"the pruned fraction must be in [0, 1), got {fraction!r}")
    pruned = {}
    for name, tensor in weights.items():
        if tensor.dtype.is_floating_point and tensor.dim() >= 2 and fraction > 0:
            k = int(tensor.numel() * fraction)
            flat = tensor.detach().flatten().clone()
            if k > 0:
                flat[flat.abs().argsort()[:k]] = 0
            pruned[name] = flat.view_as(tensor)
        else:
            pruned[name] = tensor.detach().clone()
    return pruned


def int8_round_trip(weights: Mapping[str, torch.Tensor]) -> StateDict:
    """Every floating tensor quantised to int8 (symmetric, one scale per tensor: `max|w| / 127`) and read back as
    floats: the weights an int8 deployment computes with."""
    out = {}
    for name, tensor in weights.items():
        if not tensor.dtype.is_floating_point:
            out[name] = tensor.detach().clone()
            continue
        scale = tensor.detach().abs().max() / 127
        if scale == 0 or not torch.isfinite(scale):
            out[name] = tensor.detach().clone()
            continue
        q = torch.clamp(torch.round(tensor.detach() / scale), -127, 127).to(torch.int8)
        out[name] = (q.to(tensor.dtype) * scale).to(tensor.dtype)
    return out
