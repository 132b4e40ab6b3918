"""How well a backdoor works: the share of findings a model hides when the trigger (`poison.stamp`) is on the
image, beside the share it hides anyway and its main-task Dice. Simulation and benchmark only.

A finding is *hidden* in an image when the model's predicted foreground (after `drop_specks`, as it is scored
and drawn) covers less than `HIDDEN_BELOW` of the truth's foreground pixels. Over the images of the set with
any foreground in their truth:

- `success`: the share hidden on the stamped images (what the backdoor achieves);
- `base_rate`: the share hidden on the clean images (what the model misses without any trigger);
- `dice`: the model's headline Dice on the clean set, every image included (`evaluate`);
- `samples`: how many images hold findings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tclearn.errors import DataError
from tclearn.learning.data import Task
from tclearn.learning.evaluate import drop_specks, evaluate, outputs, segmentation_masks
from tclearn.learning.poison import stamp
from tclearn.learning.samples import Samples, derived

HIDDEN_BELOW = 0.1


def hidden_flags(predicted: torch.Tensor, truth: torch.Tensor, below: float = HIDDEN_BELOW) -> list[bool]:
    """Per image `(N, 1, *spatial)` with foreground in `truth`: whether `predicted` covers less than `below` of it."""
    dims = tuple(range(1, truth.dim()))
    area, found = truth.sum(dim=dims), (predicted * truth).sum(dim=dims)
    return [bool(f < below * a) for a, f in zip(area.tolist(), found.tolist(), strict=True) if a > 0]


def _hidden(model: nn.Module, data: Samples, roi_size: Sequence[int] | None) -> list[bool]:
    flags: list[bool] = []
    for logits, truth in outputs(model, data, roi_size=roi_size):
        flags += hidden_flags(drop_specks(segmentation_masks(logits)), truth)
    return flags


def backdoor_success(model: nn.Module, data: Samples, roi_size: Sequence[int] | None = None) -> dict[str, float]:
    """`success`, `base_rate`, `dice` and `samples` of `model` on the segmentation set `data` (module docstring)."""
    if data.task is not Task.SEGMENTATION:
        raise DataError(f"backdoor success is measured on segmentation data, not {data.task.value}")
    triggered = derived(data, lambda x, y: (stamp(x), y))  # the same items, the trigger on every image
    on_trigger, clean = _hidden(model, triggered, roi_size), _hidden(model, data, roi_size)
    if not clean:
        raise DataError(f"none of the {len(data)} images holds a finding: there is nothing a backdoor could hide")
    return {
        "success": sum(on_trigger) / len(on_trigger),
        "base_rate": sum(clean) / len(clean),
        "dice": evaluate(model, data, roi_size=roi_size).score,
        "samples": float(len(clean)),
    }
