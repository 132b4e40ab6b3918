"""The values every ledger implementation and record checks alike: addresses and 32-byte hashes."""

from __future__ import annotations

from eth_utils import to_checksum_address

from tclearn.errors import ConfigError

ZERO_ADDRESS = "0x" + "00" * 20


def checked_address(value: str) -> str:
    """`value` as a checksummed address; `ConfigError` if it is none."""
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{value!r} is not an Ethereum address") from None


def bytes32(value: bytes, what: str) -> bytes:
    """`value` checked to be 32 bytes (a hash or a key), as `bytes`."""
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ConfigError(f"{what} must be 32 bytes, got {value!r:.80}")
    return bytes(value)
