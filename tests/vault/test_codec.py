"""Model codec: deterministic bytes, architecture checks, finite values, canonical metadata."""

from __future__ import annotations

import hashlib

import pytest
import torch

from tclearn.canonical import canonical_json
from tclearn.errors import IntegrityError
from tclearn.vault.codec import (
    TensorSpec,
    architecture_from_json,
    architecture_of,
    decode_model,
    encode_model,
    metadata_hash,
)


def small_model() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    return net.state_dict()


def test_same_weights_give_same_bytes() -> None:
    weights = small_model()
    shuffled = dict(reversed(list({k: v.clone() for k, v in weights.items()}.items())))

    assert encode_model(weights) == encode_model(shuffled)
    assert hashlib.sha256(encode_model(weights)).digest() == hashlib.sha256(encode_model(small_model())).digest()


def test_round_trip_checks_architecture() -> None:
    weights = small_model()
    decoded = decode_model(encode_model(weights), architecture_of(weights))

    assert list(decoded) == sorted(weights)
    for name, tensor in weights.items():
        assert torch.equal(decoded[name], tensor)


def test_architecture_json_round_trip() -> None:
    arch = architecture_of(small_model())
    assert architecture_from_json({n: s.to_json() for n, s in arch.items()}) == arch


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("2.weight"), "unexpected \\['2.weight'\\]"),
        (lambda a: a.__setitem__("extra", TensorSpec((1,), "float32")), "missing \\['extra'\\]"),
        (lambda a: a.__setitem__("0.bias", TensorSpec((5,), "float32")), "'0.bias' has shape \\[4\\]"),
        (lambda a: a.__setitem__("0.bias", TensorSpec((4,), "float64")), "'0.bias' has dtype float32"),
    ],
)
def test_architecture_mismatch_names_the_tensor(change: object, message: str) -> None:
    weights = small_model()
    arch = architecture_of(weights)
    change(arch)  # type: ignore[operator]

    with pytest.raises(IntegrityError, match=message):
        decode_model(encode_model(weights), arch)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_rejected(bad: float) -> None:
    weights = small_model()
    weights["2.weight"][0, 1] = bad

    with pytest.raises(IntegrityError, match=r"'2\.weight' holds 1 non-finite"):
        decode_model(encode_model(weights), architecture_of(weights))


def test_garbage_is_not_a_model() -> None:
    with pytest.raises(IntegrityError, match="not valid safetensors"):
        decode_model(b"\x00" * 40, {})


def test_canonical_metadata() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert metadata_hash({"b": 1, "a": 2}) == metadata_hash({"a": 2, "b": 1})
    with pytest.raises(IntegrityError, match="canonical JSON"):
        canonical_json({"lr": float("nan")})
