"""Exports: a committed model taken out of the coalition by one hospital, with a fingerprint of its own.

`export_model` writes a fingerprint (`tclearn.learning.watermark`, `FINGERPRINT_BITS` bits) into a copy of a
committed model by self-distillation on the hospital's own images (`tclearn.learning.fingerprint.embed`), keeping
the coalition's watermark where it has one. The fingerprint's secret comes from the hospital's master secret
(derived from its account key) and a fresh nonce, so each export carries another mark. Its key is sealed in the
vault for the coalition's tracers (the active auditors with an encryption key; without any, the active members),
and the export is recorded on chain, signed by the hospital, with the key's sha256 (the commitment) and the key
blob's hash: nothing is recorded unless the mark was written and scored, and the copy is the caller's to write
only once the chain holds the record (`write_export`). `tclearn.coalition.trace` finds which export a model
came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tclearn.coalition.backend import TensorBackend, tensors
from tclearn.coalition.context import Coalition
from tclearn.coalition.hospital import Hospital
from tclearn.errors import AccessDenied, ConflictError, DataError, NotFoundError
from tclearn.learning.fingerprint import embed
from tclearn.learning.samples import Samples
from tclearn.learning.watermark import (
    FINGERPRINT_BITS,
    MAX_CARRIER,
    MarkKey,
    choose_carrier,
    fingerprint_secret,
    measure,
    new_key,
)
from tclearn.ledger.ledger import Ledger
from tclearn.types import Member, ModelRecord, ModelState, Role
from tclearn.vault.codec import encode_model
from tclearn.vault.envelope import seal

StateDict = dict[str, torch.Tensor]
MASTER_INFO = b"tclearn fingerprint master v1"
EXPORT_SCHEMA = "tclearn.export/1"


def master_secret(account_key: bytes) -> bytes:
    """A hospital's fingerprint master secret: HKDF-SHA256 of its account's private key; only it can compute it."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=MASTER_INFO).derive(account_key)


def tracers(members: Iterable[Member]) -> dict[str, bytes]:
    """Who may read fingerprint keys (address -> X25519 key): the active auditors holding an encryption key, or,
    where there is none, the active members holding one."""
    keyed = [m for m in members if m.active and any(m.encryption_key)]
    auditors = {m.address: m.encryption_key for m in keyed if Role.AUDITOR in m.roles}
    return auditors or {m.address: m.encryption_key for m in keyed if Role.MEMBER in m.roles}


def exportable(client: Ledger, model_id: int) -> ModelRecord:
    """Model `model_id` as the chain holds it, if it may be exported: `NotFoundError` for an unknown id,
    `ConflictError` naming its state for one that is not committed."""
    count = client.model_count()
    if not 0 <= model_id < count:
        raise NotFoundError(f"no model {model_id} on chain: the models are 0 to {count - 1}", model_id=model_id)
    record = client.get_model(model_id, with_uri=False)
    if record.state is not ModelState.COMMITTED:
        raise ConflictError(
            f"model {model_id} is {record.state.name.lower()}, not committed: only committed models are exported "
            f"(the head is {client.head()})",
            model_id=model_id,
        )
    return record


@dataclass(frozen=True)
class SideBySide:
    """The committed model and its fingerprinted copy scored on one labelled set ("L": the hospital's local test
    set; "G": the global one)."""

    data: str
    samples: int
    committed: float
    exported: float


@dataclass(frozen=True)
class Export:
    """A recorded export: its id on chain, the model it copies, the copy's weights and scores, and the commitment
    to its fingerprint key (sha256 of the key record) and the sealed key's vault hash."""

    id: int
    model_id: int
    model_hash: str
    member: str
    weights: StateDict
    scores: tuple[SideBySide, ...]
    fingerprint: str
    key_blob: str
    tx_hash: str
    block: int

    def summary(self) -> dict[str, Any]:
        """What the export's JSON holds (no weights)."""
        return {
            "schema": EXPORT_SCHEMA,
            "export_id": self.id,
            "model_id": self.model_id,
            "model_hash": self.model_hash,
            "member": self.member,
            "fingerprint": self.fingerprint,
            "key_blob": self.key_blob,
            "tx_hash": self.tx_hash,
            "block": self.block,
            "scores": [vars(s) for s in self.scores],
        }


def fingerprint_key(member: Hospital, weights: StateDict, model_hash: str) -> MarkKey:
    """A fresh fingerprint key of `member` for the model `weights` (hash `model_hash`), over a wide carrier."""
    secret = fingerprint_secret(master_secret(bytes(member.account.key)), model_hash, os.urandom(16))
    carrier = choose_carrier(weights, minimum=MAX_CARRIER)
    return new_key(weights, "fingerprint", bits=FINGERPRINT_BITS, secret=secret, carrier=carrier)


def _side_by_side(
    backend: TensorBackend, member: Hospital, sets: Mapping[str, Samples], before: StateDict, after: StateDict, ref: str
) -> tuple[SideBySide, ...]:
    return tuple(
        SideBySide(
            name,
            len(data),
            backend.score(member, before, data, ref).score,
            backend.score(member, after, data, f"export of {ref}").score,
        )
        for name, data in sets.items()
        if len(data)
    )


def export_model(co: Coalition, member: Hospital, model_id: int, *, max_steps: int = 1000) -> Export:
    """`member` exports committed model `model_id` with a fingerprint of its own, recorded on chain (see the
    module); raises before any work for a model that is not committed, and records nothing if a step fails."""
    record = exportable(co.client, model_id)
    backend = tensors(co.backend, f"exporting model {model_id}")  # variant C: no member holds it in clear
    readers = tracers(co.client.members())
    if not readers:
        raise AccessDenied("no active auditor or member has an encryption key: nobody could trace this export")
    model_hash = record.model_hash.hex()
    weights = backend.open(member, model_hash)
    key = fingerprint_key(member, weights, model_hash)
    marks = [co.watermark, key] if co.watermark is not None else [key]
    with co.clock("training"):
        embedded = embed(
            backend.network(weights), member.train, marks, max_steps=max_steps, batch_size=backend.training.batch_size
        )
    wrong = {k.purpose: measure(embedded.weights, k).errors for k in marks}
    if any(wrong.values()):
        raise DataError(
            f"the fingerprint was not written in {embedded.steps} steps (bits read wrong: "
            + ", ".join(f"{purpose} {n}" for purpose, n in wrong.items())
            + "); nothing was recorded: export again"
        )
    scores = _side_by_side(
        backend, member, {"L": member.local_test, "G": co.global_test}, weights, embedded.weights, model_hash
    )
    with co.clock("crypto"):
        key_blob = seal(co.store, [key.encode()], readers)
    with co.clock("ledger"):
        export_id, tx = co.client.record_export(
            member.account, model_id, bytes.fromhex(key.sha256()), bytes.fromhex(key_blob)
        )
    return Export(
        export_id,
        model_id,
        model_hash,
        member.address,
        embedded.weights,
        scores,
        key.sha256(),
        key_blob,
        tx.tx_hash,
        tx.block_number,
    )


def write_export(path: Path, export: Export, about: Mapping[str, Any]) -> Path:
    """The export's weights as `path` (the coalition's safetensors encoding) and its JSON as `path` + ".json"
    (`export.summary()` with `about`: chain, contract, model config), each written to a temporary file beside it
    and renamed into place, the JSON last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**export.summary(), **about}
    for target, data in (
        (path, encode_model(export.weights)),
        (json_path(path), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()),
    ):
        write_bytes_atomically(target, data)
    return path


def json_path(path: Path) -> Path:
    """Where an export file's JSON lies: `<file>.json`."""
    return path.with_name(path.name + ".json")


def write_bytes_atomically(target: Path, data: bytes) -> None:
    """`data` written to a file beside `target` and renamed onto it: a reader sees all of it or none."""
    fd, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
