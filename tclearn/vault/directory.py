"""What the vault needs to know about the coalition's members, as a small interface.

The on-chain adapter (ledger package) implements `MemberDirectory` from the Coalition contract's
registry; `StaticDirectory` is the in-memory implementation used by tests, the embedded demo and a
vault service started from a JSON member file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from eth_utils import is_address, to_checksum_address

from tclearn.errors import ConfigError


class MemberDirectory(Protocol):
    """Active members and their registered X25519 encryption keys."""

    def is_active_member(self, address: str) -> bool:
        """True when `address` (any case) is an active member on chain."""
        ...

    def encryption_keys(self) -> dict[str, bytes]:
        """Checksum address -> 32-byte X25519 public key, for every active member."""
        ...


def checksum(address: str) -> str:
    """The EIP-55 form of `address`; raises `ConfigError` naming it when it is not an address."""
    if not isinstance(address, str) or not is_address(address):
        raise ConfigError(f"invalid Ethereum address {address!r}")
    return str(to_checksum_address(address))


class StaticDirectory:
    """A fixed set of active members, each with an optional X25519 public key."""

    def __init__(self, members: Mapping[str, bytes | None]) -> None:
        self._keys: dict[str, bytes | None] = {}
        for address, key in members.items():
            if key is not None and len(key) != 32:
                raise ConfigError(f"X25519 key of {address} must be 32 bytes, got {len(key)}")
            self._keys[checksum(address)] = key

    def add(self, address: str, key: bytes | None = None) -> None:
        self._keys[checksum(address)] = key

    def remove(self, address: str) -> None:
        self._keys.pop(checksum(address), None)

    def is_active_member(self, address: str) -> bool:
        return is_address(address) and checksum(address) in self._keys

    def encryption_keys(self) -> dict[str, bytes]:
        return {address: key for address, key in self._keys.items() if key is not None}

    @classmethod
    def from_file(cls, path: str | Path) -> StaticDirectory:
        """Load `{"0xAddress": "hex X25519 key or null", ...}`."""
        try:
            raw = json.loads(Path(path).read_text())
            return cls({a: bytes.fromhex(k.removeprefix("0x")) if k else None for a, k in raw.items()})
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"cannot read member file {str(path)!r}: {exc}") from None
