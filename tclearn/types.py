"""Shared value types: roles, variants, model states and the records read from the ledger.

Plain frozen dataclasses and enums, free of any I/O, so that every layer (ledger, coalition, audit,
services) speaks the same language.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tclearn.errors import ConfigError, LedgerError


class Role(enum.IntFlag):
    """On-chain roles; one account may hold several (e.g. MEMBER | VALIDATOR)."""

    NONE = 0
    MEMBER = 1
    VALIDATOR = 2
    AUDITOR = 4
    SUPERVISOR = 8

    @classmethod
    def parse(cls, text: str | list[str]) -> Role:
        """`"member,validator"` or `["member", "validator"]` -> Role.MEMBER | Role.VALIDATOR."""
        names = text.split(",") if isinstance(text, str) else list(text)
        roles = cls.NONE
        for raw in names:
            name = raw.strip().upper()
            if not name:
                continue
            if name not in cls.__members__ or name == "NONE":
                valid = ", ".join(n.lower() for n in cls.__members__ if n != "NONE")
                raise ConfigError(f"unknown role {raw.strip()!r}; expected some of: {valid}")
            roles |= cls[name]
        if roles == cls.NONE:
            raise ConfigError("at least one role is required (member, validator, auditor, supervisor)")
        return roles

    def names(self) -> list[str]:
        return [r.name.lower() for r in Role if r and r in self and r.name]


class Variant(enum.IntEnum):
    """Security variant of a coalition; the integer is what the contract stores."""

    A = 1  # public model, blobs in clear
    B = 2  # private model, envelope-encrypted blobs
    C = 3  # homomorphically encrypted model, supervisor holds the key

    @classmethod
    def parse(cls, text: str | int) -> Variant:
        if isinstance(text, int):
            try:
                return cls(text)
            except ValueError:
                raise ConfigError(f"unknown variant {text}; expected 1 (A), 2 (B) or 3 (C)") from None
        name = text.strip().upper()
        if name not in cls.__members__:
            raise ConfigError(f"unknown variant {text!r}; expected A, B or C")
        return cls[name]


class VoteMode(enum.StrEnum):
    """How a validator's vote reaches the chain (a coalition setting of each site: `votes`)."""

    SIGNED = "signed"  # signed off chain, posted to the vault's ballot box; a deciding set goes in one `decide`
    # one `vote` transaction per validator: the liveness fallback for a site that cannot reach the vault's
    # ballot box (it still counts: `decide` adds the signed votes to the direct ones)
    DIRECT = "direct"


class ModelState(enum.IntEnum):
    """States of a model block, numbered as in Coalition.sol."""

    NONE = 0
    SUBMITTED = 1
    OPEN = 2
    COMMITTED = 3
    REJECTED = 4
    EXPIRED = 5
    STALE = 6

    @property
    def final(self) -> bool:
        return self in (ModelState.COMMITTED, ModelState.REJECTED, ModelState.EXPIRED, ModelState.STALE)


class RejectReason(enum.IntEnum):
    """Why a candidate was rejected, as emitted in the `Rejected` event."""

    INTEGRITY = 1  # the general found the blob broken, undecodable or against policy
    VOTES = 2  # enough validators rejected that 2/3 approval can no longer be reached


@dataclass(frozen=True)
class Member:
    address: str
    roles: Role
    active: bool
    encryption_key: bytes
    name: str
    index: int  # position in the contract's vote bitmaps
    validator_since: int  # first model id this account may vote on
    joined_at: int  # unix seconds
    member_since: int = 0  # first proposal id this account may ballot on
    epsilon_spent: int = 0  # privacy its candidates were charged, epsilon in millionths (never decreases)


@dataclass(frozen=True)
class ModelRecord:
    """A model block as the contract holds it (the URI and the metadata hash come from the `Submitted` event:
    None when it was not read)."""

    id: int
    parent_id: int
    model_hash: bytes
    metadata_hash: bytes | None
    proposer: str
    general: str
    state: ModelState
    eligible: int
    approvals: int
    rejections: int
    general_deadline: int
    voting_deadline: int
    uri: str | None = None

    @property
    def metadata_hex(self) -> str:
        """The metadata hash in hex; `LedgerError` for a record read without its `Submitted` event."""
        if self.metadata_hash is None:
            raise LedgerError(f"model {self.id} was read without its Submitted event: its metadata hash is unknown")
        return self.metadata_hash.hex()


@dataclass(frozen=True)
class Vote:
    candidate_id: int
    validator: str
    approve: bool
    score_global: float
    score_local: float
    evidence_hash: bytes


def hex32(value: Any) -> bytes:
    """32 bytes given as such or as hex (with or without 0x); `ValueError` naming what is wrong."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = str(value).removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{value!r} is not hex") from None
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes (64 hex digits), got {len(raw)}")
    return raw
