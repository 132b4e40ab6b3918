"""The maths of active learning: disagreement measures, test-time augmentation, dropout, density, diversity, the
loop's count."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tclearn.errors import ConfigError, DataError
from tclearn.learning.active import (
    COMMITTEE_SCHEMA,
    committee_chosen,
    density,
    descriptor,
    dropout_maps,
    file_sha256,
    flips,
    pairwise_dice_disagreement,
    random_scores,
    select,
    smoothed_dice,
    tta_maps,
    vote_entropy,
    votes,
)
from tclearn.learning.defaults import MIN_FINDING_AREA
from tclearn.learning.models import build_model


def box(rows: tuple[int, int], cols: tuple[int, int], edge: int = 8) -> torch.Tensor:
    """A boolean `edge` x `edge` mask, true on `rows` x `cols` (half-open ranges)."""
    mask = torch.zeros(edge, edge, dtype=torch.bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def seg(*masks: torch.Tensor) -> torch.Tensor:
    """Probability maps `(K, 1, H, W)` from boolean masks (true -> 0.9, false -> 0.1)."""
    return torch.stack(masks)[:, None].float() * 0.8 + 0.1


EMPTY = box((0, 0), (0, 0))
BIG = box((0, 4), (0, 4))  # 16 pixels
OTHER = box((4, 8), (4, 8))  # 16 pixels, none of BIG's
HALF = box((0, 4), (0, 2))  # 8 pixels, all in BIG
SMALL = box((7, 8), (0, 5))  # 5 pixels: the smallest finding a prediction keeps (MIN_FINDING_AREA)
SPECK = box((7, 8), (0, 4))  # 4 pixels: a speck, dropped
S = MIN_FINDING_AREA


@pytest.mark.parametrize(
    ("maps", "expected"),
    [
        (seg(BIG, BIG), 0.0),
        (seg(EMPTY, EMPTY), 0.0),  # both empty: agreement
        (seg(SPECK, EMPTY), 0.0),  # a speck is no finding: it is dropped, as predict drops it
        (seg(SMALL, EMPTY), 0.5),  # the smallest finding kept against nothing: s / (s + s)
        (seg(BIG, EMPTY), 1 - S / (16 + S)),  # a large finding against nothing: high
        (seg(BIG, SPECK), 1 - S / (16 + S)),
        (seg(BIG, OTHER), 1 - S / (32 + S)),  # two different large findings: high
        (seg(BIG, HALF), 1 - (16 + S) / (24 + S)),
        (seg(BIG, BIG, OTHER), 1 - (1 + 2 * S / (32 + S)) / 3),
        (torch.tensor([[0.7, 0.3], [0.2, 0.8]]), 1.0),  # classes: two votes differ
        (torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1]]), 0.0),
        (torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.1, 0.9]]), 2 / 3),
    ],
)
def test_pairwise_dice_disagreement(maps: torch.Tensor, expected: float) -> None:
    assert pairwise_dice_disagreement(maps) == pytest.approx(expected)


def test_disagreement_grows_with_what_is_in_dispute() -> None:
    assert (
        pairwise_dice_disagreement(seg(SPECK, EMPTY))
        < pairwise_dice_disagreement(seg(SMALL, EMPTY))
        < pairwise_dice_disagreement(seg(BIG, EMPTY))
        < pairwise_dice_disagreement(seg(BIG, OTHER))
    )


@pytest.mark.parametrize(
    ("a", "b", "smoothing", "expected"),
    [
        (EMPTY, EMPTY, S, 1.0),  # two empty masks agree
        (box((0, 1), (0, 1)), EMPTY, S, S / (1 + S)),  # one pixel against nothing: near agreement
        (BIG, EMPTY, S, S / (16 + S)),
        (BIG, OTHER, S, S / (32 + S)),  # two different large findings: near 0
        (BIG, HALF, S, (16 + S) / (24 + S)),
        (BIG, BIG, S, 1.0),
        (BIG, HALF, 1e-9, 16 / 24),  # s -> 0: plain Dice
    ],
)
def test_smoothed_dice(a: torch.Tensor, b: torch.Tensor, smoothing: float, expected: float) -> None:
    assert smoothed_dice(a, b, smoothing) == pytest.approx(expected)


@pytest.mark.parametrize("smoothing", [0.0, -1.0, math.nan])
def test_smoothing_must_be_positive(smoothing: float) -> None:
    with pytest.raises(ConfigError, match="smoothing"):
        smoothed_dice(BIG, BIG, smoothing)


@pytest.mark.parametrize(
    ("mask", "min_area", "kept"),
    [
        (SPECK, MIN_FINDING_AREA, 0),
        (SMALL, MIN_FINDING_AREA, 5),
        (SPECK | BIG, MIN_FINDING_AREA, 16),  # two components: the speck goes, the finding stays
        (SPECK, 1, 4),  # min_area 1: every pixel above 0.5 votes
    ],
)
def test_votes_drop_specks(mask: torch.Tensor, min_area: int, kept: int) -> None:
    voted = votes(seg(mask, mask), min_area)
    assert voted.dtype == torch.bool and voted.shape == (2, 1, 8, 8)
    assert int(voted[0].sum()) == int(voted[1].sum()) == kept


@pytest.mark.parametrize(
    ("maps", "expected"),
    [
        (seg(BIG, BIG), 0.0),
        (seg(BIG, OTHER), 0.5),  # 32 of 64 pixels split 1:1 -> 1 bit each
        (seg(BIG, HALF), 8 / 64),  # 8 pixels of 64 split
        (seg(SPECK, EMPTY), 0.0),  # the speck is dropped
        (seg(BIG, BIG, HALF), 8 / 64 * -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))),
        (torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]]), math.log(2) / math.log(3)),
        (torch.tensor([[0.9, 0.1], [0.8, 0.2]]), 0.0),
    ],
)
def test_vote_entropy(maps: torch.Tensor, expected: float) -> None:
    assert vote_entropy(maps) == pytest.approx(expected)


def test_one_map_is_no_committee() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        pairwise_dice_disagreement(seg(BIG))


@pytest.mark.parametrize(("dims", "count"), [(2, 3), (3, 4)])
def test_flips(dims: int, count: int) -> None:
    assert len(flips(dims)) == count and flips(dims)[0] == ()


def test_tta_of_a_flip_invariant_model_agrees_and_of_a_biased_one_does_not() -> None:
    x = torch.rand(1, 1, 8, 8)
    same = tta_maps(lambda b: torch.full_like(b, 0.9), x)
    left = tta_maps(lambda b: (torch.arange(8) < 4).float().expand_as(b).clone(), x)  # always the left half
    assert same.shape == (3, 1, 8, 8) and pairwise_dice_disagreement(same) == 0.0
    assert pairwise_dice_disagreement(left) > 0.3


def test_tta_flips_back() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, 0] = 1.0
    maps = tta_maps(lambda b: b.clone(), x)  # the identity: each flip is flipped back onto the original
    assert torch.equal(maps, x.expand(3, 1, 4, 4))


def test_dropout_needs_dropout() -> None:
    unet = build_model({"arch": "unet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1})
    with pytest.raises(ConfigError, match="no dropout"):
        dropout_maps(unet, torch.rand(1, 1, 16, 16))


def test_dropout_maps_vary_and_leave_the_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    net.train()
    maps = dropout_maps(net, torch.rand(1, 4), runs=6)
    assert maps.shape == (6, 3) and not torch.allclose(maps[0], maps[1])
    assert net.training


def test_random_scores_are_seeded() -> None:
    assert np.array_equal(random_scores(5, 3), random_scores(5, 3))
    assert not np.array_equal(random_scores(5, 3), random_scores(5, 4))


def test_descriptor_is_small_and_centred() -> None:
    d2, d3 = descriptor(torch.rand(2, 64, 48)), descriptor(torch.rand(1, 20, 20, 20))
    assert d2.shape == (256,) and d3.shape == (4096,)
    assert abs(d2.mean()) < 1e-9


def _pictures(count: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    return [torch.from_numpy(rng.random((1, 32, 32))) for _ in range(count)]


@pytest.mark.parametrize(
    ("diversity", "top2"),
    [
        (0.0, {0, 1}),  # by score alone the two copies come first
        (0.5, {0, 2}),  # the copy is passed over for the next different image
    ],
)
def test_near_duplicates_are_not_both_picked(diversity: float, top2: set[int]) -> None:
    pictures = _pictures(4)
    pictures[1] = pictures[0].clone()
    descriptors = np.stack([descriptor(p) for p in pictures])
    order = select([0.9, 0.9, 0.8, 0.1], descriptors, diversity)
    assert set(order[:2]) == top2 and sorted(order) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("scores", "order"),
    [([0.1, 0.5, 0.3], [1, 2, 0]), ([0.2, 0.2, 0.2], [0, 1, 2]), ([3.0], [0])],
)
def test_select_by_score_alone(scores: list[float], order: list[int]) -> None:
    assert select(scores, np.zeros((len(scores), 4)), 0.0) == order


@pytest.mark.parametrize("diversity", [-1.0, math.inf, math.nan])
def test_select_refuses_a_bad_diversity(diversity: float) -> None:
    with pytest.raises(ConfigError, match="diversity must be a number >= 0"):
        select([1.0], np.zeros((1, 4)), diversity)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1.0, -1.0], [1.0, -1.0]], [1.0, 1.0]),  # alike
        ([[1.0, -1.0], [-1.0, 1.0]], [0.0, 0.0]),  # opposite
        ([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]], [0.5, 0.5]),  # unrelated
        ([[0.0, 0.0], [1.0, -1.0]], [0.5, 0.5]),  # a constant picture is unrelated to all
        ([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], [0.5, 0.5, 0.0]),  # the odd one out is the least typical
        ([[1.0, -1.0]], [1.0]),  # a pool of one
    ],
)
def test_density_is_the_mean_similarity_to_the_rest(rows: list[list[float]], expected: list[float]) -> None:
    assert np.allclose(density(np.array(rows)), expected)


def _pool_with_outlier(typical: int) -> np.ndarray:
    """`typical` noisy copies of one picture, then one unrelated picture: descriptors."""
    rng = np.random.default_rng(1)
    base = torch.from_numpy(rng.random((1, 32, 32)))
    pictures = [base + 0.2 * torch.from_numpy(rng.random((1, 32, 32))) for _ in range(typical)]
    return np.stack([descriptor(p) for p in [*pictures, torch.from_numpy(rng.random((1, 32, 32)))]])


@pytest.mark.parametrize(
    ("power", "diversity", "first"),
    [
        (0.0, 0.0, 5),  # by score alone the outlier's top disagreement comes first
        (0.0, 0.3, 5),
        (1.0, 0.0, 0),  # weighted by density, the typical image with a little less disagreement comes first
        (1.0, 0.3, 0),
        (2.0, 0.0, 0),
    ],
)
def test_density_puts_a_typical_image_before_an_outlier(power: float, diversity: float, first: int) -> None:
    descriptors = _pool_with_outlier(5)
    order = select([0.9, 0.5, 0.4, 0.3, 0.1, 1.0], descriptors, diversity, power)
    assert order[0] == first and sorted(order) == list(range(6))


def test_density_leaves_a_uniform_pool_in_score_order() -> None:
    descriptors = np.tile(descriptor(_pictures(1)[0]), (4, 1))
    assert select([0.2, 0.9, 0.5, 0.7], descriptors, 0.0, 1.0) == [1, 3, 2, 0]


@pytest.mark.parametrize("power", [-0.5, math.inf, math.nan])
def test_select_refuses_a_bad_density_exponent(power: float) -> None:
    with pytest.raises(ConfigError, match="the density exponent must be a number >= 0"):
        select([1.0], np.zeros((1, 4)), 0.0, power)


def test_committee_chosen_counts_listed_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for k in range(4):
        (images / f"i{k}.png").write_bytes(bytes([k]) * 10)
    assert committee_chosen(tmp_path) == 0
    listed = [file_sha256(images / "i1.png"), file_sha256(images / "i3.png"), "0" * 64]
    (tmp_path / "committee.json").write_text(json.dumps({"schema": COMMITTEE_SCHEMA, "sha256": listed}))
    assert committee_chosen(tmp_path) == 2


def test_committee_chosen_in_class_folders(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "x.png").write_bytes(label.encode())
    listed = [file_sha256(tmp_path / "b" / "x.png")]
    (tmp_path / "committee.json").write_text(json.dumps({"schema": COMMITTEE_SCHEMA, "sha256": listed}))
    assert committee_chosen(tmp_path) == 1


def test_a_bad_committee_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "committee.json").write_text("{not json")
    with pytest.raises(DataError, match=r"committee\.json"):
        committee_chosen(tmp_path)


def test_series_sha256_covers_its_files(tmp_path: Path) -> None:
    series = tmp_path / "s"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"a")
    before = file_sha256(series)
    (series / "1.dcm").write_bytes(b"b")
    assert file_sha256(series) != before
