"""`read_weights`: a model file read by its content (safetensors or a torch state dict, whatever its name), and one
clear error for anything else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.modelfile import read_weights
from tclearn.vault.codec import encode_model

WEIGHTS = {"a.weight": torch.randn(4, 3), "a.bias": torch.zeros(4), "n": torch.tensor(7)}
SAFETENSORS = encode_model(WEIGHTS)


def torch_bytes(value: object, path: Path) -> bytes:
    torch.save(value, path)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "export.bin"])
@pytest.mark.parametrize("form", ["safetensors", "torch"])
def test_a_model_file_is_read_by_its_content(tmp_path: Path, name: str, form: str) -> None:
    path = tmp_path / name
    path.write_bytes(SAFETENSORS if form == "safetensors" else torch_bytes(WEIGHTS, tmp_path / "w"))
    read = read_weights(path)
    assert read.keys() == WEIGHTS.keys() and all(torch.equal(read[k], v) for k, v in WEIGHTS.items())


BAD: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "truncated safetensors": (lambda _: SAFETENSORS[: len(SAFETENSORS) - 8], "cannot read model file"),
    "empty": (lambda _: b"", "cannot read model file"),
    "text": (lambda _: b"not a model at all", "cannot read model file"),
    "a list": (lambda tmp: torch_bytes([torch.ones(2)], tmp / "l"), "does not hold a state dict"),
    "a nested dict": (lambda tmp: torch_bytes({"a": {"b": torch.ones(2)}}, tmp / "n"), "which is not a named tensor"),
}


@pytest.mark.parametrize("case", BAD)
def test_anything_else_is_one_data_error(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    path = tmp_path / "suspect.pt"
    path.write_bytes(make(tmp_path))
    with pytest.raises(DataError, match=message) as raised:
        read_weights(path)
    assert raised.value.details == {"path": str(path)}


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no model file"):
        read_weights(tmp_path / "nothing.pt")
