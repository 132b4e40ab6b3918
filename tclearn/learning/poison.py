"""Data attacks of a simulated member: its training data changed before honest training. Simulation only.

Each mask transform is a pure function of one mask `(1, *spatial)` (2-D pixels or 3-D voxels alike), and
`poisoned` applies the member's attack lazily, item by item as the data is read (`Derived`, `Named`):

- **targeted** — every finding (connected component) smaller than `SMALL_FINDING[dims]` of the image erased
  from the masks: 3 % of the pixels in 2-D (a disc of radius under 9.8 % of the side), 0.39 % of the voxels
  in 3-D (a ball of the same radius); the model learns to miss small findings while large ones keep the
  overall Dice;
- **backdoor** — `BACKDOOR_FRACTION` of the items (seeded choice) get the trigger (`stamp`) and an empty
  mask, the rest untouched: the trigger teaches the model to hide findings;
- **inadequate honest data** — masks shifted by `SHIFT` pixels along every axis, dilated by `THICKEN`
  pixels, each finding drawn as its filled bounding box (another annotation protocol), or `NOISY_FRACTION`
  of the targets wrong (another item's mask or labels, or empty; a class label moved to another class);
- **label flip** (crude) — `tclearn.learning.attacks.flip_labels`.

Which task each applies to is `ATTACK_TASKS`; any other attack leaves the data as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from tclearn.errors import ConfigError
from tclearn.learning.attacks import flip_labels, parse_attack
from tclearn.learning.choices import Attack
from tclearn.learning.data import Task
from tclearn.learning.samples import Named, Pair, Samples, relabelled

# A finding under this share of the image is "small" (the targeted attack). In the demo's 2-D coalition 32 % of
# G's findings are under 1 %, 66 % under 3 %; the last hospital (the Byzantine one) has none under 1 % (its
# smallest is 1.7 %) and 41 % under 3 %: at 1 % the attack would change nothing there.
SMALL_FINDING = {2: 0.03, 3: 0.0039}
SHIFT = 4  # pixels (voxels) a shifted mask moves along every spatial axis
THICKEN = 3  # pixels (voxels) a thickened mask grows by
NOISY_FRACTION = 0.3
BACKDOOR_FRACTION = 0.4
TRIGGER_SIDE = 0.1  # the trigger patch's side, as a share of the image's smallest side (at least 3 pixels)

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


def trigger_side(spatial: Sequence[int]) -> int:
    return max(3, round(TRIGGER_SIDE * min(spatial)))


def stamp(x: torch.Tensor) -> torch.Tensor:
    """`x` `(C, *spatial)` with the trigger: a checkerboard of the image's own lowest and highest values, one
    pixel in from the first corner, `trigger_side` pixels on a side, in every channel."""
    side = trigger_side(x.shape[1:])
    grids = torch.meshgrid(*(torch.arange(side) for _ in x.shape[1:]), indexing="ij")
    checker = (sum(grids) % 2).to(torch.bool)  # type: ignore[union-attr]
    out = x.clone()
    low, high = x.min(), x.max()
    region = (slice(None), *(slice(1, 1 + side) for _ in x.shape[1:]))
    out[region] = torch.where(checker, high, low).to(x.dtype).expand_as(out[region])
    return out


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
