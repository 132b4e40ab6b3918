"""Audits a coalition run: every blob the chain vouches for, and every commit's quorum, from logs alone.

`audit(history, store)` takes the history folded from the chain's events (`tclearn.ledger.history`) and
the vault the coalition stored its blobs in; it never decrypts anything — it re-hashes what the vault
returns and compares with the hashes on chain. A blob present with content other than its hash is always
an error, whatever became of its candidate: altered evidence of a rejected poisoning attempt is a cover-up.
A committed model whose blob, metadata, general's report or validators' evidence is missing is an error; a
missing blob of a candidate that never made it is a warning (a retention policy may drop it), and for a
candidate the general rejected for integrity only information (a blob that never reached the vault is why
it was rejected). Every acceptance policy the chain declared (`PolicyChanged`) must be in the vault as
hashed: validators applied it, so a missing one leaves their votes unexplained, and is an error. Every commit
must carry a 2/3 quorum of distinct validators other than the
proposer, a general's opening, and a committed parent, so that the lineage is a chain from genesis. Every privacy
charge on chain must be the epsilon its candidate's metadata declares, and that epsilon what its mechanism spends
(`audit/privacy.py`): a chain that counts less than was spent is an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tclearn.audit.findings import Finding, Severity
from tclearn.audit.privacy import declared_privacy, spending
from tclearn.errors import IntegrityError, NotFoundError
from tclearn.ledger.history import CandidateHistory, LedgerHistory
from tclearn.records import Privacy
from tclearn.types import ModelState, RejectReason
from tclearn.vault.store import BlobStore

ZERO_HASH = b"\x00" * 32


class BlobStatus(enum.StrEnum):
    """What the vault holds under a hash the chain vouches for."""

    OK = "ok"
    MISSING = "missing"
    TAMPERED = "tampered"


@dataclass(frozen=True)
class AuditReport:
    """The audit's verdict: `ok` iff no finding is an error."""

    findings: tuple[Finding, ...]
    models_checked: int
    blobs_verified: int
    lineage: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == Severity.ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "models_checked": self.models_checked,
            "blobs_verified": self.blobs_verified,
            "lineage": list(self.lineage),
            "findings": [{"severity": str(f.severity), "model_id": f.model_id, "what": f.what} for f in self.findings],
        }


def hex_hash(digest: bytes) -> str:
    """`0x`-prefixed hex of an on-chain bytes32."""
    return "0x" + digest.hex()


def check_blob(store: BlobStore, digest: bytes) -> BlobStatus:
    """Reads the whole blob `digest` from `store`, re-hashing it. Other vault errors (auth, network) propagate."""
    try:
        for _ in store.iter_blob(digest.hex()):
            pass
    except NotFoundError:
        return BlobStatus.MISSING
    except IntegrityError:
        return BlobStatus.TAMPERED
    return BlobStatus.OK


def committed_lineage(history: LedgerHistory) -> tuple[list[int], list[Finding]]:
    """Committed ids from genesis to head, walking parents from head, and findings if the walk breaks."""
    chain: list[int] = []
    current, seen = history.head, set[int]()
    while True:
        candidate = history.candidates.get(current)
        if candidate is None:
            return chain[::-1], [Finding(Severity.ERROR, current, "is on the lineage but was never submitted")]
        if current in seen:
            return chain[::-1], [Finding(Severity.ERROR, current, "the lineage loops back to it")]
        seen.add(current)
        chain.append(current)
        if candidate.state != ModelState.COMMITTED:
            state = candidate.state.name.lower()
            return chain[::-1], [Finding(Severity.ERROR, current, f"is on the lineage but {state}, not committed")]
        if current == 0:
            return chain[::-1], []
        current = candidate.parent_id


def quorum_findings(candidate: CandidateHistory) -> list[Finding]:
    """Checks a committed candidate's own record: opened, distinct non-proposer voters, 2/3 approval."""
    found: list[Finding] = []

    def error(what: str) -> None:
        found.append(Finding(Severity.ERROR, candidate.id, what))

    if candidate.report_hash is None:
        error("was committed without its general opening it (no CandidateOpened)")
    voted: set[str] = set()
    approvers: set[str] = set()
    for vote in candidate.votes:
        if vote.validator in voted:
            error(f"validator {vote.validator} voted twice")
        voted.add(vote.validator)
        if vote.validator == candidate.proposer:
            error(f"its proposer {vote.validator} voted on it")
        elif vote.approve:
            approvers.add(vote.validator)
    if len(approvers) * 3 < candidate.eligible * 2:
        error(
            f"was committed with {len(approvers)} distinct approvals of {candidate.eligible} eligible "
            f"validators, short of 2/3"
        )
    return found


def _blob_severity(candidate: CandidateHistory, committed: bool) -> Severity:
    if committed:
        return Severity.ERROR
    if candidate.state == ModelState.REJECTED and candidate.reject_reason == RejectReason.INTEGRITY:
        return Severity.INFO
    return Severity.WARNING


def severity_of(status: BlobStatus, if_missing: Severity) -> Severity:
    """A tampered blob is always an error; a missing one weighs what its candidate's fate allows."""
    return Severity.ERROR if status is BlobStatus.TAMPERED else if_missing


def references(candidate: CandidateHistory) -> list[tuple[str, bytes, Severity]]:
    """(what, hash, severity if missing) for every blob the chain links to `candidate`."""
    committed = candidate.state == ModelState.COMMITTED
    blob_severity = _blob_severity(candidate, committed)
    side_severity = Severity.ERROR if committed else Severity.WARNING
    refs = [("model blob", candidate.model_hash, blob_severity), ("metadata", candidate.metadata_hash, blob_severity)]
    if candidate.report_hash is not None:
        refs.append(("general's report", candidate.report_hash, side_severity))
    refs += [(f"evidence of {v.validator}", v.evidence_hash, side_severity) for v in candidate.votes]
    return [(what, digest, severity) for what, digest, severity in refs if digest != ZERO_HASH]


def policy_findings(history: LedgerHistory, statuses: dict[bytes, BlobStatus], store: BlobStore) -> list[Finding]:
    """Every declared acceptance policy's record, checked in the vault (named by the first model it judges)."""
    found = []
    for declared in history.policies:
        if declared.hash not in statuses:
            statuses[declared.hash] = check_blob(store, declared.hash)
        status = statuses[declared.hash]
        if status != BlobStatus.OK:
            what = f"the acceptance policy {hex_hash(declared.hash)} declared from this model on is {status}"
            found.append(Finding(Severity.ERROR, declared.from_model, what))
    return found


def audit(history: LedgerHistory, store: BlobStore, metadata: dict[bytes, Privacy | None] | None = None) -> AuditReport:
    """Checks every blob the chain vouches for and every commit's quorum; see the module docstring. `metadata`: the
    privacy records already read by metadata hash (`privacy.declared_privacy`'s cache: blobs are content-addressed,
    and every blob is re-hashed here all the same), so that a service auditing again reads no metadata twice."""
    lineage, findings = committed_lineage(history)
    on_lineage = set(lineage)
    statuses: dict[bytes, BlobStatus] = {}  # a blob referenced twice is read once
    findings += policy_findings(history, statuses, store)
    for candidate in sorted(history.candidates.values(), key=lambda c: c.id):
        committed = candidate.state == ModelState.COMMITTED
        if committed and candidate.id not in on_lineage:
            findings.append(
                Finding(Severity.ERROR, candidate.id, f"is committed but not on the lineage to head {history.head}")
            )
        if committed and candidate.id != 0:
            findings += quorum_findings(candidate)
            if candidate.report_hash == ZERO_HASH:
                findings.append(
                    Finding(Severity.WARNING, candidate.id, "its general filed no integrity report (zero hash)")
                )
        for what, digest, if_missing in references(candidate):
            if digest not in statuses:
                statuses[digest] = check_blob(store, digest)
            status = statuses[digest]
            if status != BlobStatus.OK:
                severity = severity_of(status, if_missing)
                findings.append(Finding(severity, candidate.id, f"{what} {hex_hash(digest)} is {status}"))
    findings += spending(history, declared_privacy(store, history, metadata))[1]
    return AuditReport(
        findings=tuple(findings),
        models_checked=len(history.candidates),
        blobs_verified=sum(s == BlobStatus.OK for s in statuses.values()),
        lineage=tuple(lineage),
    )
