"""Deterministic model codec: a torch state_dict <-> safetensors bytes, plus canonical metadata JSON.

The same weights always give the same bytes (tensors sorted by name, no free-form header metadata,
contiguous CPU copies), hence the same sha256 on chain. Decoding checks every tensor against the
declared architecture (names, shapes, dtypes) and refuses NaN or infinite values, naming the tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from tclearn.canonical import canonical_hash
from tclearn.errors import IntegrityError


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype (torch name without the `torch.` prefix, e.g. "float32") of one tensor."""

    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


Architecture = Mapping[str, TensorSpec]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def architecture_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, TensorSpec]:
    """The architecture a state_dict declares, as `{name: TensorSpec}` sorted by name."""
    return {
        name: TensorSpec(tuple(tensor.shape), _dtype_name(tensor.dtype)) for name, tensor in sorted(state_dict.items())
    }


def architecture_from_json(data: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """Inverse of `{name: spec.to_json()}`, as found in model metadata."""
    return {name: TensorSpec(tuple(int(d) for d in s["shape"]), str(s["dtype"])) for name, s in data.items()}


def encode_model(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of `state_dict`; identical weights give identical bytes."""
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in sorted(state_dict.items())}
    return bytes(st_save(tensors, metadata=None))


def decode_model(data: bytes, architecture: Architecture) -> dict[str, torch.Tensor]:
    """Tensors of `data`, checked against `architecture`; raises `IntegrityError` naming the tensor."""
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"model blob is not valid safetensors: {exc}") from None
    missing = sorted(set(architecture) - set(tensors))
    unexpected = sorted(set(tensors) - set(architecture))
    if missing or unexpected:
        raise IntegrityError(
            f"model tensors do not match the architecture: missing {missing}, unexpected {unexpected}",
            missing=missing,
            unexpected=unexpected,
        )
    for name, spec in architecture.items():
        check_tensor(name, tensors[name], spec)
    return dict(sorted(tensors.items()))


def check_tensor(name: str, tensor: torch.Tensor, spec: TensorSpec) -> None:
    """Raise `IntegrityError` naming `name` unless the tensor matches `spec` and is finite."""
    if tuple(tensor.shape) != spec.shape:
        raise IntegrityError(
            f"tensor {name!r} has shape {list(tensor.shape)}, expected {list(spec.shape)}", tensor=name
        )
    if _dtype_name(tensor.dtype) != spec.dtype:
        raise IntegrityError(
            f"tensor {name!r} has dtype {_dtype_name(tensor.dtype)}, expected {spec.dtype}", tensor=name
        )
    if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise IntegrityError(f"tensor {name!r} holds {bad} non-finite value(s)", tensor=name)


def metadata_hash(metadata: Mapping[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of `metadata`, as recorded on chain."""
    return canonical_hash(metadata)
