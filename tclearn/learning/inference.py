"""The one way the library turns a batch of inputs `(N, C, *spatial)` into logits, for evaluation and prediction.

Segmentation models see either one forward pass over the whole image, padded to the network's size multiple and
cropped back, or — for 3-D volumes, and for 2-D images larger than a given window — MONAI's
`sliding_window_inference`, which runs the network on overlapping windows and blends them (Gaussian weights, so
a window's edges count less than its centre). Classification (and multi-label) models take the whole input
in one pass: they pool over it, so neither padding nor windows apply.

A standardising model (`models.Standardized`) standardises the whole image once and the windows slide over its
network: every window sees the image's mean and variance, as in training, not its own, and the zeros the
padding adds are the image's mean, not black. Pure of I/O; the output is float32 on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference
from monai.utils import convert_to_tensor
from torch import nn
from torch.nn import functional

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import Task
from tclearn.learning.models import Arch, ModelConfig, Standardized, standardize
from tclearn.learning.train import choose_device

PAD_MULTIPLE = 16  # the size multiple of every default zoo network (BasicUNet's four halvings); see size_multiple
DEFAULT_ROI_EDGE = 96  # a 3-D window's edge in voxels when none is given: 96^3 is the usual MONAI window
DEFAULT_SW_BATCH_SIZE = 4  # windows per forward pass
BLEND = "gaussian"


def size_multiple(config: ModelConfig) -> int:
    """What every spatial size must be a multiple of for `config`'s network: the product of its down-sampling
    strides (1 for a network that pools to classes)."""
    options = config.options
    match config.arch:
        case Arch.UNET | Arch.ATTENTION_UNET:
            return math.prod(options["strides"])
        case Arch.BASIC_UNET:
            return 16
        case Arch.SEGRESNET:
            return int(2 ** (len(options["blocks_down"]) - 1))
        case _:
            return 1


def window(
    spatial: Sequence[int], roi_size: Sequence[int] | None = None, multiple: int = PAD_MULTIPLE
) -> tuple[int, ...] | None:
    """The sliding window for an input of size `spatial`, or None for one padded forward pass.

    3-D: `roi_size`, else each axis of the volume rounded up to `multiple` and capped at `DEFAULT_ROI_EDGE` (a
    volume within the cap is one window). 2-D: `roi_size` where the image is larger than it on some axis, else
    None. A given `roi_size` must hold one positive multiple of `multiple` per spatial axis.
    """
    if roi_size is not None:
        roi = tuple(roi_size)
        fits = all(isinstance(r, int) and not isinstance(r, bool) and r > 0 and r % multiple == 0 for r in roi)
        if len(roi) != len(spatial) or not fits:
            raise ConfigError(
                f"roi_size {list(roi)} must hold {len(spatial)} positive multiples of {multiple} "
                f"(one per spatial axis of an input of size {list(spatial)}; {multiple} is the network's size multiple)"
            )
        if len(spatial) == 3 or any(s > r for s, r in zip(spatial, roi, strict=True)):
            return roi
        return None
    if len(spatial) != 3:
        return None
    cap = max(multiple, DEFAULT_ROI_EDGE // multiple * multiple)
    return tuple(min(cap, -(-s // multiple) * multiple) for s in spatial)


def _parts(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]:
    """What is done to the whole image first, and the network the windows run through."""
    if isinstance(model, Standardized):
        return standardize, model.net
    return (lambda x: x), model


def _padded_forward(net: nn.Module, x: torch.Tensor, multiple: int, device: torch.device) -> torch.Tensor:
    spatial = x.shape[2:]
    pad: list[int] = []
    for size in reversed(spatial):  # functional.pad takes the last axis first
        pad += [0, -size % multiple]
    out = net(functional.pad(x, pad).to(device)).float().cpu()
    return out[(..., *(slice(0, s) for s in spatial))]


@torch.no_grad()
def infer(
    model: nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = DEFAULT_SW_BATCH_SIZE,
    device: str = "auto",
    *,
    task: Task = Task.SEGMENTATION,
    multiple: int = PAD_MULTIPLE,
) -> torch.Tensor:
    """Logits of `model` for the batch `x` `(N, C, *spatial)`, in eval mode (its mode is restored; it stays on
    `device`).

    Segmentation: the sliding window `window(spatial, roi_size, multiple)` with `overlap` between windows and
    `sw_batch_size` windows per pass, or one forward pass padded to `multiple` and cropped back. Other tasks:
    `model(x)`. Windows run on `device`; the blended output is assembled on the CPU, so a large volume needs
    GPU memory for its windows only.
    """
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    if not isinstance(sw_batch_size, int) or isinstance(sw_batch_size, bool) or sw_batch_size < 1:
        raise ConfigError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}")
    x = convert_to_tensor(x, track_meta=False)
    dev = choose_device(device)
    was_training = model.training
    model.eval().to(dev)
    try:
        if task is not Task.SEGMENTATION:
            return model(x.to(dev)).float().cpu()
        if x.dim() not in (4, 5):
            raise DataError(f"segmentation inputs are (N, C, *spatial) with 2 or 3 spatial axes; got {tuple(x.shape)}")
        prepare, net = _parts(model)
        x = prepare(x.float())
        roi = window(tuple(x.shape[2:]), roi_size, multiple)
        if roi is None:
            return _padded_forward(net, x, multiple, dev)
        out = sliding_window_inference(
            x, roi, sw_batch_size, net, overlap=overlap, mode=BLEND, sw_device=dev, device=torch.device("cpu")
        )
        if not isinstance(out, torch.Tensor):  # pragma: no cover - our networks return one tensor
            raise ConfigError(f"the network returned {type(out).__name__}, not one tensor of logits")
        return convert_to_tensor(out, track_meta=False).float()
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        raise ConfigError(f"the model does not fit inputs of shape {tuple(x.shape[1:])}: {str(exc)[:200]}") from None
    finally:
        model.train(was_training)
