"""Tracing a model found outside the coalition back to the export it came from.

Every export on chain (`Ledger.exports`) is read: its fingerprint key is fetched from the vault and unsealed by a
tracer, checked against the commitment on chain, and the suspect model is measured against it. The test is
two-sided: a reading *matches* with at most `t` bits wrong, and reads *inverted* with at most `t` bits right — the
mark of an adversary who held the key and pushed its bits to the wrong side, which only the exporter (and the
tracers) could. With `n` exports tried, `t = threshold(bits, 2n)`: the chance that a model which carries none of
the marks matches or inverts any of them is at most `FALSE_ACCUSATION` (a union bound over the `2n` tails, each bit
a fair coin under chance: `tclearn.learning.watermark`). `Trace.bound` is the bound actually kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.errors import AccessDenied, AuthError, IntegrityError, NotFoundError
from tclearn.learning.watermark import FALSE_ACCUSATION, MarkKey, Reading, chance_tail, measure, threshold
from tclearn.ledger.ledger import ExportRecord, Ledger
from tclearn.vault.envelope import unseal
from tclearn.vault.store import BlobStore

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ExportReading:
    """The suspect measured against one export's fingerprint; a match when at most `threshold` bits read wrong,
    inverted when at most `threshold` bits read right (removed by a holder of its key)."""

    export: ExportRecord
    reading: Reading
    threshold: int

    @property
    def match(self) -> bool:
        return self.reading.errors <= self.threshold

    @property
    def inverted(self) -> bool:
        return self.reading.bits - self.reading.errors <= self.threshold

    @property
    def p_value(self) -> float:
        """The chance, under chance, of a reading this far from half the bits wrong on either side."""
        r = self.reading
        return min(1.0, 2 * chance_tail(r.bits, min(r.errors, r.bits - r.errors)))

    def summary(self) -> dict[str, Any]:
        r = self.reading
        return {
            "export_id": self.export.id,
            "model_id": self.export.model_id,
            "member": self.export.member,
            "block": self.export.block,
            "bits": r.bits,
            "errors": r.errors,
            "ber": r.ber,
            "p_value": r.p_value,
            "threshold": self.threshold,
            "match": self.match,
            "inverted": self.inverted,
        }


@dataclass(frozen=True)
class Trace:
    """Every export's reading of one suspect model, the exports it matches (their members are accused), the
    false-accusation bound the thresholds keep, and the coalition watermark's reading where it has one."""

    readings: tuple[ExportReading, ...]
    watermark: Reading | None = None

    @property
    def accused(self) -> tuple[ExportReading, ...]:
        """The exports the suspect matches, or whose fingerprint it carries inverted."""
        return tuple(r for r in self.readings if r.match or r.inverted)

    @property
    def bound(self) -> float:
        """The chance, for a model that carries none of the marks, that any export matches or reads inverted (union
        bound over both tails)."""
        return sum(2 * chance_tail(r.reading.bits, r.threshold) for r in self.readings)

    def summary(self) -> dict[str, Any]:
        mark = self.watermark
        return {
            "exports": len(self.readings),
            "readings": [r.summary() for r in self.readings],
            "accused": [
                {"member": r.export.member, "export_id": r.export.id, "p_value": r.p_value, "inverted": r.inverted}
                for r in self.accused
            ],
            "false_accusation_bound": self.bound,
            "alpha": FALSE_ACCUSATION,
            "watermark": None
            if mark is None
            else {"bits": mark.bits, "errors": mark.errors, "ber": mark.ber, "p_value": mark.p_value},
        }


def fingerprint_key(store: BlobStore, export: ExportRecord, tracer: str, private: X25519PrivateKey) -> MarkKey:
    """Export `export`'s fingerprint key, unsealed by `tracer` and checked against the commitment on chain; errors
    name the export."""
    blob = export.key_blob.hex()
    try:
        raw = b"".join(unseal(store, blob, tracer, private))
    except AccessDenied:
        raise AccessDenied(
            f"export {export.id}'s fingerprint key (blob {blob}) is not sealed for {tracer}: it is sealed for the "
            "auditors who held an encryption key when it was made (or the members, without any); trace as one of "
            "them",
            export_id=export.id,
        ) from None
    except AuthError as exc:
        raise AuthError(
            f"export {export.id}'s fingerprint key (blob {blob}): {exc}; trace with the X25519 key {tracer} registered "
            "on chain (a site's encryption_key, or --key)",
            export_id=export.id,
        ) from None
    except (IntegrityError, NotFoundError) as exc:
        raise type(exc)(f"export {export.id}'s fingerprint key (blob {blob}): {exc}", export_id=export.id) from None
    try:
        key = MarkKey.parse(raw)
    except IntegrityError as exc:
        raise IntegrityError(
            f"export {export.id}'s fingerprint key (blob {blob}): {exc}", export_id=export.id
        ) from None
    committed, read = export.fingerprint.hex(), key.sha256()
    if read != committed or key.purpose != "fingerprint":
        raise IntegrityError(
            f"the fingerprint key in blob {blob} is not the one export {export.id} committed to "
            f"(sha256 {committed} on chain, {read} read)",
            export_id=export.id,
        )
    return key


def trace(
    client: Ledger,
    store: BlobStore,
    tracer: str,
    private: X25519PrivateKey,
    suspect: StateDict,
    watermark: MarkKey | None = None,
) -> Trace:
    """`suspect` measured against every export on chain (and the coalition's `watermark`, if given) as `tracer`
    reads their keys; `IntegrityError` for a model of another architecture (nobody is accused)."""
    mark = None if watermark is None else measure(suspect, watermark)
    exports = client.exports()
    readings = []
    for export in exports:
        key = fingerprint_key(store, export, tracer, private)
        readings.append(ExportReading(export, measure(suspect, key), threshold(key.bits, 2 * len(exports))))
    return Trace(tuple(readings), mark)
