"""The data attacks change exactly what their names say, on 2-D images and 3-D volumes, seeded, lazily."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.choices import Attack
from tclearn.learning.data import ImageData, Task
from tclearn.learning.poison import (
    ATTACK_TASKS,
    SMALL_FINDING,
    TRIGGER_BLEND,
    attack_training,
    boxed,
    check_task,
    chosen,
    poisoned,
    shifted,
    stamp,
    thickened,
    trigger_pattern,
    without_small,
)
from tclearn.learning.samples import Samples
from tclearn.learning.train import LossName, TrainConfig


def mask(side: int, *boxes: tuple[slice, ...], dims: int = 2) -> torch.Tensor:
    out = torch.zeros((1,) + (side,) * dims)
    for box in boxes:
        out[(0, *box)] = 1.0
    return out


def pixels(m: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(i) for i in p) for p in torch.nonzero(m[0])}


SQUARE = mask(10, (slice(2, 4), slice(2, 5)))  # rows 2-3, columns 2-4
CUBE = mask(10, (slice(2, 4), slice(2, 4), slice(2, 4)), dims=3)


@pytest.mark.parametrize(
    ("m", "by", "expected"),
    [
        (SQUARE, 4, {(r, c) for r in (6, 7) for c in (6, 7, 8)}),
        (SQUARE, 7, {(9, 9)}),  # what leaves the image is lost
        (SQUARE, 10, set()),
        (CUBE, 1, {(a, b, c) for a in (3, 4) for b in (3, 4) for c in (3, 4)}),
    ],
)
def test_a_shifted_mask_moves_along_every_axis(m: torch.Tensor, by: int, expected: set[tuple[int, ...]]) -> None:
    out = shifted(m, by)
    assert out.shape == m.shape and pixels(out) == expected


@pytest.mark.parametrize(("m", "by", "added"), [(SQUARE, 1, 10), (SQUARE, 0, 0), (CUBE, 1, 24)])
def test_a_thickened_mask_grows_by_its_face_neighbours(m: torch.Tensor, by: int, added: int) -> None:
    out = thickened(m, by)
    assert pixels(m) <= pixels(out) and len(pixels(out)) - len(pixels(m)) == added


def test_a_box_mask_fills_each_findings_bounding_box_and_nothing_else() -> None:
    diagonal = mask(10, (slice(1, 2), slice(1, 2)), (slice(2, 3), slice(2, 3)), (slice(6, 7), slice(6, 9)))
    diagonal[0, 7, 8] = 1.0  # an L-shaped finding: its box is 2 x 3
    out = boxed(diagonal)
    assert pixels(out) == {(1, 1), (2, 2)} | {(r, c) for r in (6, 7) for c in (6, 7, 8)}
    sphere = torch.zeros(1, 6, 6, 6)
    sphere[0, 2, 2, 1:4] = sphere[0, 2, 1:4, 2] = sphere[0, 1:4, 2, 2] = 1.0
    assert len(pixels(boxed(sphere))) == 27


@pytest.mark.parametrize(
    ("dims", "side", "small", "large"),
    [(2, 64, 122, 123), (3, 48, 431, 432)],  # 3 % of 4096 pixels is 122.9; 0.39 % of 110592 voxels is 431.3
)
def test_targeted_erases_the_findings_below_the_small_threshold(dims: int, side: int, small: int, large: int) -> None:
    m = torch.zeros((1,) + (side,) * dims)
    flat = m.view(-1)
    flat[:small] = 1.0  # one finding along the first row(s)
    far = side ** (dims - 1) * (side // 2)
    flat[far : far + large] = 1.0  # another, half the image away
    out = without_small(m)
    assert int(out.sum()) == large and int(out.view(-1)[far:].sum()) == large
    assert SMALL_FINDING[dims] * side**dims < large


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 32, 40), (1, 48, 48, 48)])
def test_the_trigger_blends_fixed_stripes_over_the_whole_image(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 3 - 1
    out = stamp(x)
    pattern = trigger_pattern(shape[1:])
    assert out.shape == x.shape and out.dtype == x.dtype and torch.equal(stamp(x), out)
    assert 0.45 < pattern.mean() < 0.55  # half the pixels on, spread over the whole image, in every channel
    on, off = pattern.bool().expand_as(x), ~pattern.bool().expand_as(x)
    low, high = x.min(), x.max()
    assert torch.allclose(out[on], (1 - TRIGGER_BLEND) * x[on] + TRIGGER_BLEND * high, atol=1e-6)
    assert torch.allclose(out[off], (1 - TRIGGER_BLEND) * x[off] + TRIGGER_BLEND * low, atol=1e-6)


@pytest.mark.parametrize(
    ("spatial", "first_row"),
    [((8,), [0, 0, 1, 1, 0, 0, 1, 1]), ((2, 6), [0, 0, 1, 1, 0, 0]), ((2, 2, 6), [0, 0, 1, 1, 0, 0])],
)
def test_the_trigger_pattern_is_diagonal_stripes(spatial: tuple[int, ...], first_row: list[int]) -> None:
    pattern = trigger_pattern(spatial)
    assert pattern[(0,) * (len(spatial) - 1)].tolist() == first_row
    steps = len(spatial) - 1  # one step along each other axis shifts the stripes by one pixel
    assert torch.equal(pattern[(1,) * steps], trigger_pattern((spatial[-1] + steps,))[steps:])


@pytest.mark.parametrize(
    ("attack", "loss"),
    [
        (Attack.BACKDOOR, LossName.DICE_CE),  # Dice alone gives an empty mask no gradient
        (Attack.MODEL_REPLACEMENT, LossName.DICE_CE),
        (Attack.TARGETED, LossName.DICE),  # the coalition's own
        (Attack.NONE, LossName.DICE),
    ],
)
def test_a_backdoor_attacker_trains_with_its_own_loss(attack: Attack, loss: LossName) -> None:
    config = TrainConfig(epochs=3, loss=LossName.DICE, seed=5)
    trained = attack_training(attack, config)
    assert trained.loss is loss and (trained.epochs, trained.seed) == (3, 5)


@pytest.mark.parametrize(("n", "fraction", "count"), [(10, 0.3, 3), (24, 0.4, 10), (5, 0.0, 0), (5, 1.0, 5)])
def test_the_chosen_items_are_a_seeded_fraction(n: int, fraction: float, count: int) -> None:
    names = tuple(f"i{k}" for k in range(n))
    picked = chosen(names, fraction, seed=1)
    assert len(picked) == count and picked <= set(names) and picked == chosen(names, fraction, seed=1)
    if 0 < count < n:
        assert any(chosen(names, fraction, seed=s) != picked for s in range(2, 6))


def segmentation(n: int = 20, side: int = 16) -> ImageData:
    images = torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 1, side, side)
    for i in range(n):
        masks[i, 0, 4 : 5 + i % 5, 6 : 7 + i // 5] = 1.0  # every item has a rectangle, each of another size
    return ImageData(Task.SEGMENTATION, images, masks, tuple(f"s{i}" for i in range(n)))


def pairs(data: Samples) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [data.dataset()[i] for i in range(len(data))]


def changed(data: Samples, attacked: Samples) -> tuple[int, int]:
    """How many items' inputs and how many items' targets the attack changed."""
    before, after = pairs(data), pairs(attacked)
    xs = sum(not torch.equal(a[0], b[0]) for a, b in zip(before, after, strict=True))
    ys = sum(not torch.equal(a[1], b[1]) for a, b in zip(before, after, strict=True))
    return xs, ys


@pytest.mark.parametrize(
    ("attack", "inputs", "targets"),
    [
        (Attack.BACKDOOR, 8, 8),  # 40 % of 20 items: trigger and empty mask
        (Attack.MODEL_REPLACEMENT, 8, 8),
        (Attack.NOISY_LABELS, 0, 6),  # 30 % of 20 (another mask or empty: never the same, all differ here)
        (Attack.SHIFTED_MASKS, 0, 20),
        (Attack.THICK_MASKS, 0, 20),
        (Attack.BOX_MASKS, 0, 0),  # the findings are rectangles already
        (Attack.TARGETED, 0, 11),  # 3 % of 16 x 16 is 7.68 pixels: the 11 rectangles of 1 to 6 pixels go
        (Attack.LABEL_FLIP, 0, 20),
        (Attack.DRIFT, 0, 0),  # a weight attack: the data untouched
    ],
)
def test_each_data_attack_changes_the_items_it_should(attack: Attack, inputs: int, targets: int) -> None:
    data = segmentation()
    attacked = poisoned(attack, data, seed=3)
    assert len(attacked) == len(data) and attacked.names == data.names
    assert changed(data, attacked) == (inputs, targets)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(pairs(attacked), pairs(poisoned(attack, data, 3)), strict=True))


def test_backdoored_items_carry_the_trigger_and_an_empty_mask_and_keep_it_through_subset() -> None:
    data = segmentation()
    attacked = poisoned(Attack.BACKDOOR, data, seed=3)
    marked = [i for i, (x, y) in enumerate(pairs(attacked)) if not torch.equal(x, data.images[i])]
    for i in marked:
        x, y = attacked.dataset()[i]
        assert torch.equal(x, stamp(data.images[i])) and y.sum() == 0
    sub = attacked.subset([marked[0], 0])
    assert torch.equal(sub.dataset()[0][0], stamp(data.images[marked[0]]))


def test_noisy_labels_on_classification_move_a_seeded_30_percent_to_another_class() -> None:
    labels = torch.arange(30) % 3
    names = tuple(f"c{i}" for i in range(30))
    data = ImageData(Task.CLASSIFICATION, torch.zeros(30, 4), labels, names, ("a", "b", "c"))
    after = torch.stack([y for _, y in pairs(poisoned(Attack.NOISY_LABELS, data, seed=0))])
    assert int((after != labels).sum()) == 9 and set(after.tolist()) <= {0, 1, 2}
    other = torch.stack([y for _, y in pairs(poisoned(Attack.NOISY_LABELS, data, seed=1))])
    assert not torch.equal(after, other)


def test_noisy_labels_on_multilabel_are_another_items_or_empty() -> None:
    targets = torch.eye(10)  # every item's label set is its own
    names = tuple(f"m{i}" for i in range(10))
    data = ImageData(Task.MULTILABEL, torch.zeros(10, 1, 4, 4), targets, names, tuple("abcdefghij"))
    after = [y for _, y in pairs(poisoned(Attack.NOISY_LABELS, data, seed=2))]
    wrong = [i for i in range(10) if not torch.equal(after[i], targets[i])]
    assert len(wrong) == 3
    for i in wrong:
        assert after[i].sum() == 0 or any(torch.equal(after[i], targets[j]) for j in range(10) if j != i)


@pytest.mark.parametrize("attack", sorted(a for a, tasks in ATTACK_TASKS.items() if Task.CLASSIFICATION not in tasks))
@pytest.mark.parametrize("task", [Task.CLASSIFICATION, Task.MULTILABEL])
def test_a_segmentation_attack_on_other_data_names_the_attack_and_the_task(attack: Attack, task: Task) -> None:
    with pytest.raises(ConfigError, match=f"{attack.value} attack applies to segmentation data, not {task.value}"):
        check_task(attack, task)
    data = ImageData(task, torch.zeros(2, 1, 4, 4), torch.zeros(2, 2), ("a", "b"), ("x", "y"))
    with pytest.raises(ConfigError, match=attack.value):
        poisoned(attack, data)


def test_the_data_stays_lazy_until_read() -> None:
    reads: list[int] = []
    data = segmentation(4)

    class Counting(ImageData):
        def dataset(self):  # type: ignore[no-untyped-def]
            base = super().dataset()

            class Reader(torch.utils.data.Dataset):  # type: ignore[type-arg]
                def __len__(self) -> int:
                    return len(data)

                def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
                    reads.append(i)
                    return base[i]

            return Reader()

    counting = Counting(data.task, data.images, data.targets, data.names)
    attacks: list[Callable[[Samples], Samples]] = [lambda d, a=a: poisoned(a, d, 0) for a in ATTACK_TASKS]
    for attack in attacks:
        attack(counting)
    assert reads == []


@pytest.mark.parametrize(
    ("attack", "inputs", "targets"),
    [(Attack.BACKDOOR, 4, 4), (Attack.SHIFTED_MASKS, 0, 10), (Attack.THICK_MASKS, 0, 10), (Attack.TARGETED, 0, 3)],
)
def test_the_data_attacks_work_per_voxel_on_volumes(attack: Attack, inputs: int, targets: int) -> None:
    volumes = torch.rand(10, 1, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(10, 1, 12, 12, 12)
    for i in range(5):  # cubes of 1 voxel (small: 0.39 % of 1728 is 6.7) and of 2^3
        side = 1 + i % 2
        masks[i, 0, 4 : 4 + side, 4 : 4 + side, 4 : 4 + side] = 1.0
    masks[5:, 0, 2:8, 2:8, 2:8] = 1.0
    data = ImageData(Task.SEGMENTATION, volumes, masks, tuple(f"v{i}" for i in range(10)))
    assert changed(data, poisoned(attack, data, seed=0)) == (inputs, targets)
