"""The values every ledger implementation and record checks alike: addresses and 32-byte hashes."""

from __future__ import annotations

import math

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


# The chain counts epsilon in millionths (uint64): a charge is rounded up, so the chain never under-counts.
EPSILON_UNIT = 10**6


def epsilon_units(epsilon: float) -> int:
    """`epsilon` as the chain counts it: millionths, rounded up (float noise below a thousandth of a unit aside)."""
    if not (isinstance(epsilon, int | float) and 0 <= epsilon < 2**63 / EPSILON_UNIT):
        raise ConfigError(f"an epsilon charged on chain must be a finite number >= 0, got {epsilon!r}")
    return math.ceil(round(epsilon * EPSILON_UNIT, 3))


def budget_left(spent: int, cap: int) -> int | None:
    """What a member may still spend of a cap, in millionths: None without a cap (0), 0 once past a lowered one."""
    return max(cap - spent, 0) if cap else None


def epsilon_of(units: int) -> float:
    """An on-chain count of millionths as epsilon."""
    return units / EPSILON_UNIT
