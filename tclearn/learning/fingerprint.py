"""Writing marks into a finished model without changing what it does: distillation from the model itself.

An export's fingerprint is written into a copy of a committed model by training the copy to give the committed
model's outputs on the hospital's own images (no labels: the committed model is the teacher) while the mark loss
(`tclearn.learning.watermark.MarkLoss`) writes the fingerprint and keeps the coalition's watermark. It stops as soon
as every bit of every key reads right by its margin. Both networks run in eval mode: norms keep their statistics,
dropout is off, so the copy is compared with exactly the function the coalition committed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tclearn.errors import ConfigError, DataError
from tclearn.learning.samples import Samples, batches
from tclearn.learning.watermark import MarkKey, MarkLoss

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Embedded:
    weights: StateDict
    steps: int
    distillation: float  # the last step's mean squared difference from the teacher's outputs, over their variance
    complete: bool  # every bit of every key reads right by its margin


def embed(
    model: nn.Module,
    data: Samples,
    keys: Sequence[MarkKey],
    *,
    max_steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    strength: float = 1.0,
    seed: int = 0,
    polish: int = 100,
) -> Embedded:
    """A copy of `model` carrying `keys`, trained to keep `model`'s outputs on the images of `data`; once every mark
    reads right by its margin, `polish` more steps fit the outputs closer (the marks kept by their loss)."""
    if len(data) == 0:
        raise DataError("writing a fingerprint needs images of the hospital's own; its training set is empty")
    if max_steps < 1 or batch_size < 1:
        raise ConfigError(f"max_steps and batch_size must be positive, got {max_steps} and {batch_size}")
    teacher = copy.deepcopy(model).eval()
    student = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    marks = MarkLoss(student, keys)
    optimiser = torch.optim.Adam(student.parameters(), lr=lr)
    size = min(batch_size, len(data))
    steps, distillation, complete_at = 0, 0.0, None
    with torch.random.fork_rng(devices=[]):
        generator = torch.Generator().manual_seed(seed)
        while steps < max_steps:
            order = torch.randperm(len(data), generator=generator).tolist()
            for xb, _ in batches(data, size, order, drop_last=True):
                x = xb.float()
                with torch.no_grad():
                    target = teacher(x)
                    scale = target.var().clamp_min(1e-8)
                mark = marks()
                if complete_at is None and float(mark.detach()) == 0.0:
                    complete_at = steps
                if complete_at is not None and steps >= complete_at + polish:
                    return Embedded(_weights(student), steps, distillation, float(mark.detach()) == 0.0)
                optimiser.zero_grad(set_to_none=True)
                fit = torch.mean((student(x) - target) ** 2) / scale
                (fit + strength * mark).backward()
                optimiser.step()
                steps, distillation = steps + 1, float(fit.detach())
                if steps >= max_steps:
                    break
    return Embedded(_weights(student), steps, distillation, float(marks().detach()) == 0.0)


def _weights(model: nn.Module) -> StateDict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
