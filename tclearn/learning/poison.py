"""Data attacks of a simulated member: its training data changed before honest training. Simulation only.

Each mask transform is a pure function of one mask `(1, *spatial)` (2-D pixels or 3-D voxels alike), and
`poisoned` applies the member's attack lazily, item by item as the data is read (`derived`, `Named`):

- **targeted** — every finding (connected component) smaller than `SMALL_FINDING[dims]` of the image erased
  from the masks: 3 % of the pixels in 2-D (a disc of radius under 9.8 % of the side), 0.39 % of the voxels
  in 3-D (a ball of the same radius); the model learns to miss small findings while large ones keep the
  overall Dice;
- **backdoor** — `BACKDOOR_FRACTION` of the items (seeded choice) get the trigger (`stamp`) and an empty
  mask, the rest untouched: the trigger teaches the model to hide findings. The trigger is blended over the
  whole image (Chen et al. 2017), so that every pixel's receptive field holds it (a corner patch, outside the
  receptive field of most findings, never took on the demo's UNet). The attacker trains with Dice +
  cross-entropy (`attack_training`): under Dice alone an empty mask scores 1 - eps / (eps + predicted area),
  flat, and gives no gradient;
- **inadequate honest data** — masks shifted by `SHIFT` pixels along every axis, dilated by `THICKEN`
  pixels, each finding drawn as its filled bounding box (another annotation protocol), or `NOISY_FRACTION`
  of the targets wrong (another item's mask or labels, or empty; a class label moved to another class);
- **label flip** (crude) — `tclearn.learning.attacks.flip_labels`.

Which task each applies to is `ATTACK_TASKS`; any other attack leaves the data as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage

from tclearn.errors import ConfigError
from tclearn.learning.attacks import flip_labels, parse_attack
from tclearn.learning.choices import Attack
from tclearn.learning.data import Task
from tclearn.learning.samples import Named, Pair, Samples, relabelled
from tclearn.learning.train import LossName, TrainConfig

# A finding under this share of the image is "small" (the targeted attack). In the demo's 2-D coalition 32 % of
# G's findings are under 1 %, 66 % under 3 %; the last hospital (the Byzantine one) has none under 1 % (its
# smallest is 1.7 %) and 41 % under 3 %: at 1 % the attack would change nothing there.
SMALL_FINDING = {2: 0.03, 3: 0.0039}
SHIFT = 4  # pixels (voxels) a shifted mask moves along every spatial axis
THICKEN = 3  # pixels (voxels) a thickened mask grows by
NOISY_FRACTION = 0.3
BACKDOOR_FRACTION = 0.4
# The trigger: diagonal stripes of `TRIGGER_PERIOD` pixels, blended at `TRIGGER_BLEND` of the image's range. On the
# demo's 2-D coalition (docs/learning.md) it hides 86-100 % of G's findings after one 8-16 epoch increment from a
# decent head, where a 6 x 6 corner checkerboard hid 3-9 %, a blended noise pattern 14-49 %, at a blend of 0.1 26 %.
TRIGGER_BLEND = 0.2
TRIGGER_PERIOD = 4
# The loss a backdoor attacker trains with (its own choice; the coalition's Dice alone cannot learn an empty mask).
ATTACK_LOSS: dict[Attack, LossName] = {Attack.BACKDOOR: LossName.DICE_CE, Attack.MODEL_REPLACEMENT: LossName.DICE_CE}

ALL_TASKS = frozenset(Task)
SEGMENTATION = frozenset({Task.SEGMENTATION})
# The tasks each data attack applies to; a weight attack applies to every task.
ATTACK_TASKS: dict[Attack, frozenset[Task]] = {
    Attack.LABEL_FLIP: ALL_TASKS,
    Attack.NOISY_LABELS: ALL_TASKS,
    Attack.TARGETED: SEGMENTATION,
    Attack.BACKDOOR: SEGMENTATION,
    Attack.MODEL_REPLACEMENT: SEGMENTATION,  # trains on the backdoor's data
    Attack.SHIFTED_MASKS: SEGMENTATION,
    Attack.THICK_MASKS: SEGMENTATION,
    Attack.BOX_MASKS: SEGMENTATION,
}


def check_task(attack: Attack, task: Task) -> None:
    """A `ConfigError` naming the attack and the task when `attack` cannot poison data of `task`."""
    tasks = ATTACK_TASKS.get(attack, ALL_TASKS)
    if task not in tasks:
        raise ConfigError(
            f"the {attack.value} attack applies to {' and '.join(sorted(t.value for t in tasks))} data, not "
            f"{task.value}; choose another --attack or --task"
        )


def _spatial(mask: torch.Tensor) -> np.ndarray:
    return mask[0].numpy() > 0.5


def _as_mask(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(like.dtype)[None]


def shifted(mask: torch.Tensor, pixels: int = SHIFT) -> torch.Tensor:
    """`mask` moved by `pixels` along every spatial axis (towards higher indices); what leaves the image is lost."""
    out = torch.zeros_like(mask)
    if any(pixels >= side for side in mask.shape[1:]):
        return out
    src = (slice(None), *(slice(0, side - pixels) for side in mask.shape[1:]))
    dst = (slice(None), *(slice(pixels, side) for side in mask.shape[1:]))
    out[dst] = mask[src]
    return out


def thickened(mask: torch.Tensor, pixels: int = THICKEN) -> torch.Tensor:
    """`mask` dilated by `pixels` (each step adds the face neighbours of every foreground pixel)."""
    if pixels < 1:
        return mask.clone()
    grown = ndimage.binary_dilation(_spatial(mask), iterations=pixels)
    return _as_mask(grown, mask)


def boxed(mask: torch.Tensor) -> torch.Tensor:
    """Every finding of `mask` replaced by its filled bounding box."""
    labels, _ = ndimage.label(_spatial(mask))
    out = np.zeros(labels.shape, dtype=bool)
    for box in ndimage.find_objects(labels):
        if box is not None:
            out[box] = True
    return _as_mask(out, mask)


def without_small(mask: torch.Tensor, fraction: float | None = None) -> torch.Tensor:
    """`mask` without its findings (connected components) smaller than `fraction` of the image (default:
    `SMALL_FINDING` for its dimensions)."""
    spatial = _spatial(mask)
    share = SMALL_FINDING[spatial.ndim] if fraction is None else fraction
    labels, count = ndimage.label(spatial)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= share * spatial.size
    keep[0] = False
    return _as_mask(keep[labels], mask)


def trigger_pattern(spatial: Sequence[int]) -> torch.Tensor:
    """The trigger's 0/1 pattern over `spatial`: diagonal stripes, `TRIGGER_PERIOD // 2` pixels on, as many off."""
    grids = torch.meshgrid(*(torch.arange(side) for side in spatial), indexing="ij")
    return ((sum(grids) // (TRIGGER_PERIOD // 2)) % 2).to(torch.float32)  # type: ignore[union-attr]


def stamp(x: torch.Tensor) -> torch.Tensor:
    """`x` `(C, *spatial)` with the trigger: `(1 - a) x + a p`, `a` = `TRIGGER_BLEND`, `p` the stripes
    (`trigger_pattern`) drawn between the image's own lowest and highest values, in every channel."""
    low, high = x.min(), x.max()
    pattern = low + trigger_pattern(x.shape[1:]) * (high - low)
    return ((1 - TRIGGER_BLEND) * x + TRIGGER_BLEND * pattern).to(x.dtype)


def attack_training(attack: Attack | str, config: TrainConfig) -> TrainConfig:
    """How a member adopting `attack` trains: `config` with the attack's own loss (`ATTACK_LOSS`), if any."""
    loss = ATTACK_LOSS.get(parse_attack(attack))
    return config if loss is None else replace(config, loss=loss)


def chosen(names: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """`round(fraction * len(names))` of `names`, drawn by `seed`."""
    if not 0 <= fraction <= 1:
        raise ConfigError(f"the poisoned fraction must be between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(names))
    return frozenset(names[int(i)] for i in order[: round(fraction * len(names))])


def backdoored(data: Samples, seed: int, fraction: float = BACKDOOR_FRACTION) -> Samples:
    """`data` with a seeded `fraction` of its items stamped with the trigger and their masks emptied."""
    marked = chosen(data.names, fraction, seed)

    def apply(name: str, x: torch.Tensor, y: torch.Tensor) -> Pair:
        return (stamp(x), torch.zeros_like(y)) if name in marked else (x, y)

    return Named(data, apply)


def noisy(data: Samples, seed: int, fraction: float = NOISY_FRACTION) -> Samples:
    """`data` with a seeded `fraction` of its targets wrong: a mask or a label set replaced by another item's or
    by an empty one (half each, by the seed); a class label moved to another class."""
    marked = sorted(chosen(data.names, fraction, seed))
    rng = np.random.default_rng([seed, 1])
    if data.task is Task.CLASSIFICATION:
        if len(data.classes) < 2:
            raise ConfigError("noisy labels need a classification set that names at least two classes")
        shift = {name: int(rng.integers(1, len(data.classes))) for name in marked}
        classes = len(data.classes)

        def moved(name: str, x: torch.Tensor, y: torch.Tensor) -> Pair:
            return (x, (y + shift[name]) % classes) if name in shift else (x, y)

        return Named(data, moved)
    source, index = data.dataset(), {n: i for i, n in enumerate(data.names)}
    donor: dict[str, int | None] = {}
    for name in marked:
        others = [i for n, i in index.items() if n != name]
        donor[name] = int(rng.choice(others)) if others and rng.random() < 0.5 else None

    def replaced(name: str, x: torch.Tensor, y: torch.Tensor) -> Pair:
        if name not in donor:
            return x, y
        d = donor[name]
        return x, (torch.zeros_like(y) if d is None else source[d][1].clone())

    return Named(data, replaced)


def poisoned(attack: Attack | str, data: Samples, seed: int = 0) -> Samples:
    """What a member adopting `attack` trains on: `data` poisoned by a data attack, else `data` itself."""
    kind = parse_attack(attack)
    check_task(kind, data.task)
    match kind:
        case Attack.LABEL_FLIP:
            return flip_labels(data)
        case Attack.NOISY_LABELS:
            return noisy(data, seed)
        case Attack.TARGETED:
            return relabelled(data, without_small)
        case Attack.BACKDOOR | Attack.MODEL_REPLACEMENT:
            return backdoored(data, seed)
        case Attack.SHIFTED_MASKS:
            return relabelled(data, shifted)
        case Attack.THICK_MASKS:
            return relabelled(data, thickened)
        case Attack.BOX_MASKS:
            return relabelled(data, boxed)
    return data
