"""The general's duty: check a candidate's integrity and the coalition's policy, store the report, open it.

Checks (PROTOCOL.md, step 2), in order, stopping at the first that fails: the blob is in the vault; the
metadata blob hashes to the on-chain metadata hash and parses as `CandidateMetadata`; it declares the current
head as parent, the coalition's variant and model (`integrity.declared_problem`); the declared training facts
meet policy (`integrity.policy_problem`); its differential privacy: required by the policy, within its rules, the
epsilon recomputed from the declared mechanism, and the charge on chain that epsilon (`integrity.privacy_problem`);
the backend opens the model — hash, decryption, decoding to exactly
the coalition's model, finite values (for an encrypted model: the coalition's context, shape and scaling, and
its weights within the range its metadata declares, measured by the supervisor); the coalition's watermark, where
its policy names one, reads within `max_ber` bit errors (`tclearn.coalition.watermark`; not measured in variant C);
the update — its distance
from its parent over the parent's norm — is the size the metadata declares and within the policy's
`max_update` (not measured in variant C, whose weights the range check bounds, and the report says so).
Fetching and writing happen here; the decisions are the pure functions of `tclearn.coalition.integrity`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tclearn.coalition.backend import tensors
from tclearn.coalition.blobs import get_record, put_record
from tclearn.coalition.blobs import metadata_hash as metadata_of
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.integrity import declared_problem, policy_problem, privacy_problem
from tclearn.coalition.watermark import reading_note, watermark_problem
from tclearn.errors import ConfigError, TclearnError
from tclearn.learning.watermark import measure
from tclearn.records import CandidateMetadata, Check, IntegrityReport
from tclearn.types import ModelRecord, Variant

log = logging.getLogger(__name__)


def _run(checks: list[Check], name: str, test: Callable[[], str | None], notes: dict[str, str]) -> bool:
    """Runs one check; a `TclearnError` or a returned message fails it (a check that passes may leave a note)."""
    try:
        problem = test()
    except TclearnError as exc:
        problem = str(exc)
    checks.append(Check(name, problem is None, notes.get(name, "") if problem is None else problem))
    return problem is None


def inspect(co: Coalition, general: Hospital, candidate: ModelRecord) -> list[Check]:
    """Every integrity and policy check of `candidate`, in order; later checks are skipped once one fails."""
    checks: list[Check] = []
    model_hash, metadata_hash = candidate.model_hash.hex(), metadata_of(co, candidate)
    read: list[CandidateMetadata] = []
    parents: list[str] = []
    opened: list[Any] = []
    notes: dict[str, str] = {}

    def blob() -> str | None:
        return None if co.store.exists(model_hash) else f"model blob {model_hash} is not in the vault"

    def metadata() -> str | None:
        read.append(get_record(co, metadata_hash, CandidateMetadata))  # re-hashed by the store, parsed strictly
        return None

    def declared() -> str | None:
        parents.append(co.client.get_model(candidate.parent_id, with_uri=False).model_hash.hex())
        return declared_problem(
            read[0], parent_hash=parents[0], variant=co.backend.variant, model=co.backend.describe()
        )

    def policy() -> str | None:
        return policy_problem(read[0], co.policy)

    def privacy() -> str | None:
        declared = read[0].privacy
        notes["privacy"] = (
            "no differential privacy declared, none required"
            if declared is None
            else f"epsilon {declared.epsilon:.6g} at delta {declared.delta:g} ({declared.accountant}) recomputed from "
            "its mechanism and charged on chain"
        )
        return privacy_problem(read[0], co.policy, co.client.privacy_charge(candidate.id))

    def weights() -> str | None:
        opened.append(co.backend.open(general, model_hash))
        return co.backend.inspect(general, opened[0], model_hash)

    def watermark() -> str | None:
        return watermark_check(co, opened[0], notes)

    def update() -> str | None:
        measured = co.backend.update_size(co.backend.open(general, parents[0]), opened[0])
        if measured is None:
            notes["update"] = (
                f"not measured: variant {co.backend.variant.name} weights are not readable in clear "
                "(the weights check bounds them)"
            )
            return None
        return co.policy.update_problem(measured, read[0].update_norm)

    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("blob", blob),
        ("metadata", metadata),
        ("declared", declared),
        ("policy", policy),
        ("privacy", privacy),
        ("weights", weights),
        ("watermark", watermark),
        ("update", update),
    ]
    for name, test in steps:
        if not _run(checks, name, test, notes):
            break
    return checks


def watermark_check(co: Coalition, model: Any, notes: dict[str, str]) -> str | None:
    """The candidate read against the coalition's watermark key: a problem when it lost the mark; a note otherwise."""
    if co.policy.watermark is None:
        notes["watermark"] = "the coalition has no watermark"
        return None
    if co.backend.variant is Variant.C:
        notes["watermark"] = "not measured: variant C weights are encrypted (docs/traceability.md)"
        return None
    if co.watermark is None:
        raise ConfigError("the coalition's policy names a watermark and this site holds no key to read it")
    tensors(co.backend, "the watermark check")  # a model in clear: a state dict
    with co.clock("evaluation"):
        reading = measure(model, co.watermark)
    notes["watermark"] = reading_note(reading)
    return watermark_problem(reading, co.policy.watermark)


def report_of(general: Hospital, candidate: ModelRecord, checks: list[Check]) -> IntegrityReport:
    return IntegrityReport(
        candidate=candidate.id,
        model_hash=candidate.model_hash.hex(),
        general=general.address,
        ok=all(c.ok for c in checks),
        checks=tuple(checks),
    )


def open_candidate(co: Coalition, general: Hospital, candidate: ModelRecord) -> tuple[bool, str, int]:
    """Inspects, stores the report, opens (or rejects) the candidate on chain; returns (ok, report hash, gas)."""
    report = report_of(general, candidate, inspect(co, general, candidate))
    report_hash = put_record(co, report)
    if not report.ok:
        failed = next(c for c in report.checks if not c.ok)
        log.warning("candidate %d fails integrity (%s): %s", candidate.id, failed.name, failed.detail)
    with co.clock("ledger"):
        tx = co.client.open_candidate(general.account, candidate.id, report.ok, bytes.fromhex(report_hash))
    return report.ok, report_hash, tx.gas_used
