"""The general's duty: check a candidate's integrity and the coalition's policy, store the report, open it.

Checks (PROTOCOL.md, step 2): the blob is in the vault and hashes to the on-chain hash; the metadata blob
hashes to the on-chain metadata hash; it declares the coalition's architecture and variant and the
current head as parent; the model decrypts (B) and decodes to exactly the declared tensors, all finite;
the declared training facts meet policy (minimum batch size). Variant C: the metadata declares the
coalition's encrypted model shape and public context, and the container parses under that context with
that shape (`tclearn.coalition.encrypted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tclearn.coalition import encrypted
from tclearn.coalition.blobs import get_json, load_model, put_json
from tclearn.coalition.context import Coalition, Hospital
from tclearn.errors import TclearnError
from tclearn.learning.models import arch_hash
from tclearn.types import ModelRecord, Variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def _run(checks: list[Check], name: str, test: Callable[[], str | None]) -> bool:
    """Runs one check; a `TclearnError` or a returned message fails it."""
    try:
        problem = test()
    except TclearnError as exc:
        problem = str(exc)
    checks.append(Check(name, problem is None, problem or ""))
    return problem is None


def inspect(co: Coalition, general: Hospital, candidate: ModelRecord) -> list[Check]:
    """Every integrity and policy check of `candidate`, in order; later checks are skipped once one fails."""
    checks: list[Check] = []
    model_hash, metadata_hash = candidate.model_hash.hex(), candidate.metadata_hash.hex()
    metadata: dict[str, Any] = {}

    def blob() -> str | None:
        return None if co.store.exists(model_hash) else f"model blob {model_hash} is not in the vault"

    def read_metadata() -> str | None:
        metadata.update(get_json(co, metadata_hash))  # the store re-hashes: a mismatch raises
        return None

    def declared() -> str | None:
        parent = co.client.get_model(candidate.parent_id, with_uri=False).model_hash.hex()
        if metadata.get("parent") != parent:
            return f"metadata names parent {metadata.get('parent')}, but the candidate's parent is {parent}"
        if metadata.get("variant") != co.variant.name:
            return f"metadata declares variant {metadata.get('variant')}, the coalition is {co.variant.name}"
        if co.variant is Variant.C:
            return encrypted.declared_problem(co, metadata)
        if metadata.get("arch_hash") != arch_hash(co.model):
            return "metadata declares another architecture than the coalition's model"
        return None

    def policy() -> str | None:
        batch = metadata.get("training", {}).get("batch_size", 0)
        if not isinstance(batch, int) or batch < co.training.min_batch_size:
            return f"declared batch size {batch} is below the coalition's minimum {co.training.min_batch_size}"
        return None

    def weights() -> str | None:
        if co.variant is Variant.C:
            encrypted.open_container(co, general, model_hash)  # hash, header, context, shape, ciphertexts
        else:
            load_model(co, general, model_hash)  # hash, decryption, tensor names, shapes, dtypes, finiteness
        return None

    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("blob", blob),
        ("metadata", read_metadata),
        ("declared", declared),
        ("policy", policy),
        ("weights", weights),
    ]
    for name, test in steps:
        if not _run(checks, name, test):
            break
    return checks


def open_candidate(co: Coalition, general: Hospital, candidate: ModelRecord) -> tuple[bool, str, int]:
    """Inspects, stores the report, opens (or rejects) the candidate on chain; returns (ok, report hash, gas)."""
    checks = inspect(co, general, candidate)
    ok = all(c.ok for c in checks)
    report = {
        "candidate": candidate.id,
        "model_hash": candidate.model_hash.hex(),
        "general": general.address,
        "ok": ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }
    report_hash = put_json(co, report)
    if not ok:
        failed = next(c for c in checks if not c.ok)
        log.warning("candidate %d fails integrity (%s): %s", candidate.id, failed.name, failed.detail)
    with co.clock("ledger"):
        tx = co.client.open_candidate(general.account, candidate.id, ok, bytes.fromhex(report_hash))
    return ok, report_hash, tx.gas_used
