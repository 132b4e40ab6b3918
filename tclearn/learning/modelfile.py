"""Model files on disk: a state dict (`.pt` via torch, or `.safetensors`) with its config JSON beside it.

`save_model` writes `<file>`, `<file stem>.json` (the model config) and, when given, `<file stem>.meta.json`
(the increment's metadata); `load_model` reads them back. Ledger model IDs are resolved elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tclearn.errors import ConfigError, DataError, NotFoundError
from tclearn.learning.models import ModelConfig, build_model

StateDict = dict[str, torch.Tensor]


def load_state(path: Path) -> StateDict:
    """The state dict in `path`, read as its suffix says: safetensors, else torch."""
    return _load(path, path.suffix == ".safetensors")


def _load(path: Path, safetensors: bool) -> StateDict:
    try:
        if safetensors:
            from safetensors.torch import load_file

            return load_file(str(path))
        with open(path, "rb") as handle:  # a handle, not the name: torch would take a `.safetensors` name for the form
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read model file {str(path)!r}: {exc}", path=str(path)) from None
    if not isinstance(state, dict):
        raise DataError(f"model file {str(path)!r} does not hold a state dict", path=str(path))
    return state


def read_weights(path: str | Path) -> StateDict:
    """The state dict in a model file, whatever its name: safetensors (what the vault's model codec and
    `tclearn export` write) or a torch state dict (`.pt`); one `NotFoundError` or `DataError` for a missing,
    corrupt, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no model file {str(path)!r}", path=str(path))
    with open(path, "rb") as handle:
        head = handle.read(9)
    safetensors = len(head) == 9 and head[8:9] == b"{"  # an 8-byte header length, then the JSON header
    state = _load(path, safetensors)
    odd = next((k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None)
    if odd is not None:
        raise DataError(f"model file {str(path)!r} holds {odd!r}, which is not a named tensor", path=str(path))
    return dict(state)


def save_state(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)


def read_config(path: Path) -> ModelConfig:
    """A model config JSON: the config itself, or metadata holding it under "model"."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read model config {str(path)!r}: {exc}") from None
    if isinstance(data, dict) and "arch" not in data and "model" in data:
        data = data["model"]
    return ModelConfig.from_dict(data)


def save_model(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    config: ModelConfig,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state(path, state)
    path.with_suffix(".json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    if metadata is not None:
        save_metadata(path, metadata)
    return path


def save_metadata(path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """`metadata` as `<file stem>.meta.json` beside the model file `path`; returns where it went."""
    target = Path(path).with_suffix(".meta.json")
    target.write_text(json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")
    return target


def load_model(model: str | Path, config: Path | None = None) -> tuple[nn.Module, ModelConfig]:
    """A model FILE with its config (given, or `<file stem>.json` / `config.json` beside it)."""
    path = Path(model)
    if not path.is_file():
        raise NotFoundError(
            f"no model file {str(model)!r}; resolving ledger model IDs is not wired yet — "
            "pass a .pt or .safetensors file"
        )
    candidates = [config] if config else [path.with_suffix(".json"), path.parent / "config.json"]
    config_path = next((c for c in candidates if c is not None and c.is_file()), None)
    if config_path is None:
        raise ConfigError(
            f"no model config for {str(path)!r}: put {path.with_suffix('.json').name} beside it or pass --config"
        )
    cfg = read_config(config_path)
    net = build_model(cfg)
    try:
        net.load_state_dict(load_state(path))
    except RuntimeError as exc:
        raise ConfigError(f"weights in {str(path)!r} do not fit the {cfg.arch} config: {str(exc)[:300]}") from None
    return net, cfg
