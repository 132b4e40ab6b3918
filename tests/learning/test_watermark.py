"""Weight watermarks (`tclearn.learning.watermark`), fingerprints written by self-distillation
(`tclearn.learning.fingerprint`) and the tampering they must survive (`tclearn.learning.tampering`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tclearn.errors import ConfigError, DataError, IntegrityError
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.fingerprint import embed
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.tampering import int8_round_trip, magnitude_prune
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.learning.volumes import Intensity, segmentation_samples
from tclearn.learning.watermark import (
    MarkKey,
    MarkLoss,
    Reading,
    chance_tail,
    choose_carrier,
    false_accusation_bound,
    fingerprint_secret,
    matches,
    measure,
    new_key,
    stamp,
    threshold,
)
from tests.learning.volumes import ct_volumes

CT = Intensity("ct", (-100.0, 200.0))
MODEL = {"arch": "unet", "options": {"channels": [8, 16, 32], "strides": [2, 2]}}


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(build_model(MODEL).state_dict())


def key(seed: int, purpose: str = "coalition", bits: int = 64) -> MarkKey:
    return new_key(weights(), purpose, bits=bits, secret=bytes([seed]) * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bits", "errors", "expected"),
    [
        (16, -1, 0.0),
        (16, 0, 2**-16),
        (16, 16, 1.0),
        (16, 8, sum(math.comb(16, k) for k in range(9)) / 2**16),
        (64, 10, sum(math.comb(64, k) for k in range(11)) / 2**64),
    ],
)
def test_chance_tail(bits: int, errors: int, expected: float) -> None:
    assert chance_tail(bits, errors) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("bits", "tests", "alpha"), [(64, 1, 1e-6), (64, 20, 1e-6), (128, 1000, 1e-6), (32, 5, 0.01)])
def test_the_threshold_is_the_largest_error_count_within_the_bound(bits: int, tests: int, alpha: float) -> None:
    t = threshold(bits, tests, alpha)
    assert tests * chance_tail(bits, t) <= alpha
    assert tests * chance_tail(bits, t + 1) > alpha


def test_too_few_bits_can_never_match() -> None:
    assert threshold(16, 1000, 1e-6) == -1  # even 0 errors of 16 happen by chance more often than 1e-9


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bits": 8}, "16 to 1024 bits"),
        ({"secret": "ab" * 31}, "32 bytes"),
        ({"secret": "zz" * 32}, "32 bytes"),
        ({"shapes": ()}, "one shape for each"),
        ({"margin": 0}, "margin"),
    ],
)
def test_a_bad_key_is_refused(change: dict[str, object], message: str) -> None:
    good = key(1)
    fields = {
        "purpose": good.purpose,
        "carrier": good.carrier,
        "shapes": good.shapes,
        "bits": good.bits,
        "secret": good.secret,
        "margin": good.margin,
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        MarkKey(**fields)  # type: ignore[arg-type]


def test_a_key_round_trips_and_its_draws_are_its_secret_s() -> None:
    k = key(1)
    again = MarkKey.parse(k.encode())
    assert again == k and again.sha256() == k.sha256()
    assert torch.equal(again.projection, k.projection) and torch.equal(again.signs, k.signs)
    other = key(2)
    assert not torch.equal(other.signs, k.signs)
    assert torch.allclose(k.projection.norm(dim=1), torch.ones(k.bits))


def test_the_carrier_is_the_largest_weight_tensors() -> None:
    w = weights()
    carrier = choose_carrier(w, minimum=1)
    biggest = max((n for n, t in w.items() if t.dim() >= 2), key=lambda n: w[n].numel())
    assert carrier == (biggest,)
    wide = choose_carrier(w, minimum=10**9, maximum=10**9)
    assert set(wide) == {n for n, t in w.items() if t.dim() >= 2 and t.dtype.is_floating_point}


def test_a_model_without_the_mark_reads_like_coin_flips() -> None:
    w = weights(3)
    errors = [measure(w, key(s)).errors for s in range(60)]  # 60 keys of 64 bits on one model
    mean = sum(errors) / len(errors)
    assert abs(mean - 32) < 3 * 4 / math.sqrt(len(errors))  # Binomial(64, 1/2): mean 32, sd 4
    assert min(errors) > threshold(64, 60)  # none reads like a match


def test_another_architecture_is_named() -> None:
    k = key(1)
    w = weights()
    missing = {n: t for n, t in w.items() if n != k.carrier[0]}
    with pytest.raises(IntegrityError, match=r"no tensor .* not of the coalition's architecture"):
        measure(missing, k)
    reshaped = {**w, k.carrier[0]: torch.zeros(3, 3)}
    with pytest.raises(IntegrityError, match=r"is \(3, 3\).* not of the coalition's architecture"):
        measure(reshaped, k)


def test_fingerprint_secrets_depend_on_master_model_and_nonce() -> None:
    model = "ab" * 32
    base = fingerprint_secret(b"m" * 32, model, b"n" * 16)
    assert base == fingerprint_secret(b"m" * 32, model, b"n" * 16)
    assert base != fingerprint_secret(b"M" * 32, model, b"n" * 16)
    assert base != fingerprint_secret(b"m" * 32, "cd" * 32, b"n" * 16)
    assert base != fingerprint_secret(b"m" * 32, model, b"N" * 16)


@pytest.fixture(scope="module")
def hospital(small_coalition: Path) -> ImageData:
    return load_segmentation(small_coalition / "hospital-1" / "train")


@pytest.fixture(scope="module")
def marked(hospital: ImageData) -> tuple[dict[str, torch.Tensor], MarkKey]:
    torch.manual_seed(0)
    parent = build_model(MODEL)
    k = new_key(parent.state_dict(), "coalition", secret=b"w" * 32)
    config = TrainConfig(epochs=6, batch_size=4, lr=0.01, loss="dice", seed=0, marks=(k,))  # type: ignore[arg-type]
    return train_increment(parent, hospital, config).weights, k


def test_training_with_the_mark_loss_writes_the_key(
    marked: tuple[dict[str, torch.Tensor], MarkKey], hospital: ImageData
) -> None:
    w, k = marked
    reading = measure(w, k)
    assert reading.errors == 0 and reading.p_value == 2.0**-k.bits
    torch.manual_seed(0)
    plain = train_increment(
        build_model(MODEL),
        hospital,
        TrainConfig(epochs=6, batch_size=4, lr=0.01, loss="dice", seed=0),  # type: ignore[arg-type]
    )
    assert measure(plain.weights, k).errors > threshold(k.bits, 1)


def test_the_mark_loss_is_zero_once_every_bit_reads_right(marked: tuple[dict[str, torch.Tensor], MarkKey]) -> None:
    w, k = marked
    model = build_model(MODEL)
    model.load_state_dict(w)
    loss = MarkLoss(model, [k])
    assert measure(w, k).margin >= k.margin * 0.9
    fresh = build_model(MODEL)
    assert float(MarkLoss(fresh, [k])().detach()) > float(loss().detach())


def test_a_fingerprint_keeps_the_function_and_survives_tampering(
    marked: tuple[dict[str, torch.Tensor], MarkKey], hospital: ImageData
) -> None:
    w, coalition = marked
    model = build_model(MODEL)
    model.load_state_dict(w)
    fp = new_key(w, "fingerprint", bits=64, secret=b"f" * 32, carrier=choose_carrier(w, minimum=10**9))
    assert measure(w, fp).errors > threshold(64, 1)  # the committed model does not carry it
    done = embed(model, hospital, [coalition, fp], polish=20)
    assert done.complete and done.distillation < 0.05
    exported = build_model(MODEL)
    exported.load_state_dict(done.weights)
    x = hospital.images[:4].float()
    with torch.no_grad():
        before, after = model.eval()(x), exported.eval()(x)
    agreement = float(((before > 0) == (after > 0)).float().mean())
    assert agreement > 0.95, agreement  # the same findings, pixel by pixel (a tiny model of 8 images)
    for tampered in (done.weights, magnitude_prune(done.weights, 0.5), int8_round_trip(done.weights)):
        assert measure(tampered, fp).errors <= threshold(64, 20)
        assert measure(tampered, coalition).errors <= threshold(coalition.bits, 1)


def test_embedding_needs_images(marked: tuple[dict[str, torch.Tensor], MarkKey], hospital: ImageData) -> None:
    w, k = marked
    model = build_model(MODEL)
    model.load_state_dict(w)
    empty = ImageData(hospital.task, hospital.images[:0], hospital.targets[:0], ())
    with pytest.raises(DataError, match="empty"):
        embed(model, empty, [k])


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.9])
def test_magnitude_pruning_zeroes_the_smallest_weights(fraction: float) -> None:
    w = weights()
    pruned = magnitude_prune(w, fraction)
    for name, t in w.items():
        if t.dtype.is_floating_point and t.dim() >= 2:
            zeros = int((pruned[name] == 0).sum())
            assert zeros >= int(t.numel() * fraction)
            kept = pruned[name][pruned[name] != 0].abs()
            if fraction and kept.numel():
                assert kept.min() >= t.abs().flatten().sort().values[int(t.numel() * fraction) - 1]
        else:
            assert torch.equal(pruned[name], t)


def test_pruning_refuses_a_bad_fraction() -> None:
    with pytest.raises(ConfigError, match="fraction"):
        magnitude_prune(weights(), 1.0)


def test_int8_round_trip_is_within_half_a_step() -> None:
    w = {**weights(), "count": torch.tensor(7)}
    rounded = int8_round_trip(w)
    for name, t in w.items():
        if t.dtype.is_floating_point:
            step = float(t.abs().max()) / 127
            assert float((rounded[name] - t).abs().max()) <= step / 2 + 1e-7
            assert len(torch.unique(rounded[name])) <= 255
        else:
            assert torch.equal(rounded[name], t)


def test_stamping_writes_the_key_into_the_carrier_alone() -> None:
    w = weights(5)
    k = key(7)
    stamped = stamp(w, k)
    assert measure(w, k).errors > threshold(k.bits, 1) and measure(stamped, k).errors == 0
    assert measure(stamped, k).margin >= k.margin
    for name, t in w.items():
        if name not in k.carrier:
            assert torch.equal(stamped[name], t)
    (name,) = k.carrier
    moved = float((stamped[name] - w[name]).norm() / w[name].norm())
    assert 0 < moved < 0.5  # another random start, near the first
    with pytest.raises(IntegrityError, match="not of the coalition's architecture"):
        stamp({n: t for n, t in w.items() if n != name}, k)


def test_a_3d_network_on_ct_volumes_carries_both_marks_through_tampering(tmp_path: Path) -> None:
    data = segmentation_samples(ct_volumes(tmp_path, 6), CT)  # int16 NIfTI in HU, read from disk
    config = ModelConfig(arch="unet", spatial_dims=3, options={"channels": [8, 16, 32], "strides": [2, 2]})  # type: ignore[arg-type]
    torch.manual_seed(0)
    genesis = build_model(config).state_dict()
    coalition = new_key(genesis, "coalition", secret=b"c" * 32)
    training = TrainConfig(epochs=2, batch_size=2, lr=0.01, loss="dice", seed=0, marks=(coalition,))  # type: ignore[arg-type]
    parent = build_model(config)
    parent.load_state_dict(stamp(genesis, coalition))
    trained = train_increment(parent, data, training).weights
    assert measure(trained, coalition).errors == 0
    model = build_model(config)
    model.load_state_dict(trained)
    fp = new_key(trained, "fingerprint", bits=64, secret=b"v" * 32, carrier=choose_carrier(trained, minimum=10**9))
    done = embed(model, data, [coalition, fp], batch_size=2, polish=10)
    assert measure(done.weights, fp).errors == 0 and measure(done.weights, coalition).errors == 0
    for tampered in (int8_round_trip(magnitude_prune(done.weights, 0.5)),):
        assert measure(tampered, fp).errors <= threshold(64, 20)
        assert measure(tampered, coalition).errors <= threshold(coalition.bits, 1)


def test_a_trace_names_a_key_read_right_or_inverted_and_nothing_between() -> None:
    t = threshold(64, 2 * 5)  # five keys on record, two tails each
    readings = [Reading(64, e, 0.0) for e in (t, 64 - t, 32, t + 1, 64 - t - 1)]
    assert matches(readings) == [0, 1]


@pytest.mark.parametrize("keys", [1, 3, 20, 1000])
def test_the_false_accusation_bound_covers_both_tails(keys: int) -> None:
    t = threshold(64, 2 * keys)
    bound = false_accusation_bound(64, keys)
    assert bound == pytest.approx(2 * keys * chance_tail(64, t)) and bound <= 1e-6
    assert 2 * keys * chance_tail(64, t + 1) > 1e-6  # the threshold is the largest within the bound
