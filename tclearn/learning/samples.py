"""What a member trains on and a validator tests on: any `Samples`, in memory or read from disk.

A `Samples` is a task, item names (and class or label names) and a torch `Dataset` of `(input, target)`
pairs. Two kinds meet it: the in-memory `ImageData` (2-D pictures, feature tables: small, stacked once) and
the disk-backed `FileSamples` (`tclearn.learning.volumes`: volumes read through MONAI datasets, cached
within a memory budget). Training and evaluation see only this protocol and the functions below, which
batch any of them through one `DataLoader`:

- `batches`: `(x, y)` batches in a given order (a seeded permutation in training), full batches only on
  request;
- `pooled`: several sets as one (the pooled baseline: every hospital's data together);
- `relabelled`: the same inputs with their targets mapped (the label-flip attack);
- `Named`: each pair mapped by a function that also gets the item's name (the data attacks that poison
  chosen items only);
- `augmented`: a seeded MONAI random transform applied to every pair (training only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from tclearn.errors import DataError
from tclearn.learning.augment import one_item
from tclearn.learning.data import Task

Pair = tuple[torch.Tensor, torch.Tensor]
PairMap = Callable[[torch.Tensor, torch.Tensor], Pair]
NamedPairMap = Callable[[str, torch.Tensor, torch.Tensor], Pair]


@runtime_checkable
class Samples(Protocol):
    """A data set as training and evaluation see it."""

    @property
    def task(self) -> Task: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def dataset(self) -> Dataset[Pair]:
        """Item `i` is `(input (C, *spatial) or (F,), target)`, as a torch `Dataset`."""
        ...

    def subset(self, indices: Sequence[int]) -> Samples: ...


def batches(
    data: Samples, batch_size: int, order: Sequence[int] | None = None, *, drop_last: bool = False
) -> Iterator[Pair]:
    """`(x, y)` batches of `data` in `order` (default: as stored); with `drop_last`, full batches only."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    indices = list(range(len(data))) if order is None else [int(i) for i in order]
    loader = DataLoader(data.dataset(), batch_size=batch_size, sampler=indices, drop_last=drop_last, num_workers=0)
    yield from loader


def first_pair(data: Samples) -> Pair:
    """Item 0 as a batch of one: what a model is checked against before a run."""
    if len(data) == 0:
        raise DataError("the data set is empty")
    x, y = data.dataset()[0]
    return x.unsqueeze(0), y.unsqueeze(0)


class _NamedMapped(Dataset[Pair]):
    def __init__(self, base: Dataset[Pair], names: tuple[str, ...], fn: NamedPairMap) -> None:
        self.base, self.names, self.fn = base, names, fn

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Pair:
        x, y = self.base[index]
        return self.fn(self.names[index], x, y)


@dataclass(frozen=True)
class Named:
    """`base`'s items with `fn(name, x, y)` applied to each as it is read: a per-item map that stays with its item
    through `subset`."""

    base: Samples
    fn: NamedPairMap

    @property
    def task(self) -> Task:
        return self.base.task

    @property
    def names(self) -> tuple[str, ...]:
        return self.base.names

    @property
    def classes(self) -> tuple[str, ...]:
        return self.base.classes

    def __len__(self) -> int:
        return len(self.base)

    def dataset(self) -> Dataset[Pair]:
        return _NamedMapped(self.base.dataset(), self.base.names, self.fn)

    def subset(self, indices: Sequence[int]) -> Samples:
        return Named(self.base.subset(indices), self.fn)


def derived(data: Samples, fn: PairMap) -> Samples:
    """`data`'s items with `fn` applied to each `(x, y)` pair as it is read."""
    return Named(data, lambda _name, x, y: fn(x, y))


def relabelled(data: Samples, fn: Callable[[torch.Tensor], torch.Tensor]) -> Samples:
    """`data` with every target mapped by `fn` (inputs untouched)."""
    return derived(data, lambda x, y: (x, fn(y)))


def augmented(data: Samples, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> Samples:
    """`data` with a MONAI dictionary transform applied to `{"image": x, "label": y}` as each item is read.

    For segmentation the label is a mask and moves with the image (flips, rotations); for classification only
    the image is handed to the transform. The transform's own random state makes it repeatable.
    """
    segmentation = data.task is Task.SEGMENTATION

    def apply(x: torch.Tensor, y: torch.Tensor) -> Pair:
        with warnings.catch_warnings():  # a case without findings is cropped anywhere: expected, not a problem
            warnings.filterwarnings("ignore", message="Num foregrounds 0", category=UserWarning)
            item = one_item(transform({"image": x, "label": y} if segmentation else {"image": x}))
        image = torch.as_tensor(item["image"]).float()
        return image.contiguous(), (torch.as_tensor(item["label"]).float().contiguous() if segmentation else y)

    return derived(data, apply)


@dataclass(frozen=True)
class Pooled:
    """Several data sets of one task as one (names prefixed by their part's position or label)."""

    parts: tuple[Samples, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise DataError("nothing to pool: no data sets given")
        tasks = {p.task for p in self.parts}
        if len(tasks) > 1:
            raise DataError(f"cannot pool data sets of different tasks: {', '.join(sorted(tasks))}")

    @property
    def task(self) -> Task:
        return self.parts[0].task

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{label}/{n}" for label, p in zip(self.labels, self.parts, strict=True) for n in p.names)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.parts[0].classes

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def dataset(self) -> Dataset[Pair]:
        return ConcatDataset([p.dataset() for p in self.parts])

    def subset(self, indices: Sequence[int]) -> Samples:
        bounds, start = [], 0
        for part in self.parts:
            bounds.append(start)
            start += len(part)
        chosen: list[list[int]] = [[] for _ in self.parts]
        for i in indices:
            k = max(j for j, b in enumerate(bounds) if b <= i)
            chosen[k].append(i - bounds[k])
        kept = [(label, p.subset(c)) for label, p, c in zip(self.labels, self.parts, chosen, strict=True) if c]
        return Pooled(tuple(p for _, p in kept), tuple(label for label, _ in kept))


def pooled(parts: Sequence[Samples], labels: Sequence[str] | None = None) -> Samples:
    """`parts` as one data set; `labels` prefix each part's item names (default: the part's position)."""
    names = tuple(labels) if labels is not None else tuple(str(i) for i in range(len(parts)))
    if len(names) != len(parts):
        raise DataError(f"{len(parts)} data sets but {len(names)} labels to pool them under")
    return Pooled(tuple(parts), names)
