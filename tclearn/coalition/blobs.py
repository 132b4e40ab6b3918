"""The round's records in the vault: candidate metadata, the general's report and vote evidence, each stored
as its canonical encoding (`tclearn.records`) and read back re-hashed and strictly parsed. Models go through
the coalition's backend (`tclearn.coalition.backend`)."""

from __future__ import annotations

from typing import TypeVar

from tclearn.coalition.context import Coalition
from tclearn.records import Record
from tclearn.types import ModelRecord

R = TypeVar("R", bound=Record)


def vault_uri(sha256: str) -> str:
    return f"vault://sha256/{sha256}"


def put_record(co: Coalition, record: Record) -> str:
    """Stores `record`; returns the sha256 of its canonical encoding (what goes on chain)."""
    with co.clock("vault"):
        return co.store.put(record.encode())


def get_record(co: Coalition, sha256: str, kind: type[R]) -> R:
    """The record `sha256` as `kind`: the store re-hashes the blob, `IntegrityError` if it does not parse."""
    with co.clock("vault"):
        raw = co.store.get(sha256)
    return kind.parse(raw)


def metadata_hash(co: Coalition, candidate: ModelRecord) -> str:
    """The candidate's metadata hash (hex), read from its `Submitted` event when the record was read without it."""
    if candidate.metadata_hash is None:
        return co.client.get_model(candidate.id).metadata_hex
    return candidate.metadata_hash.hex()
