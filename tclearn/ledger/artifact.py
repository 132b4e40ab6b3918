"""The compiled Coalition contract: ABI, bytecode, and lookup tables for its errors and events.

In an installed wheel the artifact ships as `tclearn/ledger/Coalition.json`; in a source checkout
(editable install) it is read from `contracts/build/Coalition.json`, the committed build output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from eth_utils import event_abi_to_log_topic, function_signature_to_4byte_selector

from tclearn.errors import ConfigError

_SOURCE_TREE = Path(__file__).resolve().parents[2] / "contracts" / "build" / "Coalition.json"


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str
    source_sha256: str
    errors: dict[bytes, ErrorSpec]  # 4-byte selector -> the custom error it names
    events: dict[bytes, dict[str, Any]]  # topic0 -> the event's ABI entry


def _types(inputs: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(i["type"] for i in inputs)


def _error_table(abi: list[dict[str, Any]]) -> dict[bytes, ErrorSpec]:
    table = {}
    for entry in abi:
        if entry["type"] == "error":
            types = _types(entry["inputs"])
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            names = tuple(i["name"] for i in entry["inputs"])
            table[selector] = ErrorSpec(entry["name"], names, types)
    return table


def _event_table(abi: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    return {bytes(event_abi_to_log_topic(e)): e for e in abi if e["type"] == "event"}  # type: ignore[arg-type]


def artifact_path() -> Path:
    packaged = resources.files("tclearn.ledger") / "Coalition.json"
    if packaged.is_file():
        return Path(str(packaged))
    return _SOURCE_TREE


@cache
def load_artifact() -> Artifact:
    path = artifact_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"contract artifact not found at {path}; run `make contracts`") from None
    return Artifact(
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        compiler=raw["compiler"]["version"],
        source_sha256=raw["sourceSha256"],
        errors=_error_table(raw["abi"]),
        events=_event_table(raw["abi"]),
    )
