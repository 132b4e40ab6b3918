"""The integrity of every blob the chain vouches for, checked once and re-checked on demand.

`BlobChecks` remembers what the vault held under each hash when it was last re-hashed, so that a
dashboard can show every blob without reading the whole vault on each page load; `check(..., refresh=True)`
reads the named models' blobs again (a blob shared by two models is read once per call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tclearn.audit.verify import BlobStatus, Severity, check_blob, hex_hash, references
from tclearn.errors import NotFoundError
from tclearn.ledger.history import CandidateHistory, LedgerHistory
from tclearn.vault.store import BlobStore


@dataclass(frozen=True)
class BlobCheck:
    """One blob linked to one model: what it is, its hash, what the vault held, and when that was seen."""

    model_id: int
    what: str
    sha256: str  # 0x-hex, as on chain
    status: BlobStatus
    severity: Severity  # what a missing or tampered blob weighs for this model (see `audit`)
    checked_at: float

    @property
    def ok(self) -> bool:
        return self.status == BlobStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "what": self.what,
            "sha256": self.sha256,
            "status": str(self.status),
            "ok": self.ok,
            "severity": None if self.ok else str(self.severity),
            "checked_at": self.checked_at,
        }


def candidate_of(history: LedgerHistory, model_id: int) -> CandidateHistory:
    """The candidate `model_id`, or a NotFoundError naming the ids that exist."""
    candidate = history.candidates.get(model_id)
    if candidate is None:
        known = f"ids 0..{max(history.candidates)}" if history.candidates else "no models yet"
        raise NotFoundError(f"no model {model_id} on the chain ({known})", model_id=model_id)
    return candidate


class BlobChecks:
    """Last known status of each blob in `store`, by hash."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._seen: dict[bytes, tuple[BlobStatus, float]] = {}
        self._lock = threading.Lock()

    def _status(self, digest: bytes, refresh: bool, fresh: set[bytes]) -> tuple[BlobStatus, float]:
        if digest not in self._seen or (refresh and digest not in fresh):
            self._seen[digest] = (check_blob(self.store, digest), time.time())
            fresh.add(digest)
        return self._seen[digest]

    def check(
        self, history: LedgerHistory, model_ids: Iterable[int] | None = None, *, refresh: bool = False
    ) -> list[BlobCheck]:
        """Every blob of the given models (all when None), re-hashing those never read, or all of them if `refresh`."""
        ids = sorted(history.candidates) if model_ids is None else list(model_ids)
        candidates = [candidate_of(history, i) for i in ids]
        fresh: set[bytes] = set()
        checks = []
        with self._lock:
            for candidate in candidates:
                for what, digest, severity in references(candidate):
                    status, at = self._status(digest, refresh, fresh)
                    checks.append(BlobCheck(candidate.id, what, hex_hash(digest), status, severity, at))
        return checks
