"""`audit` on a real (embedded) chain with blobs in a file vault, and its quorum rules on plain values."""

from __future__ import annotations

import pytest

from tclearn.audit.verify import Finding, Severity, audit, committed_lineage, hex_hash, quorum_findings
from tclearn.ledger.history import CandidateHistory, LedgerHistory, VoteRecord
from tclearn.types import ModelState, RejectReason
from tests.audit.conftest import AuditedRun


def _kinds(findings: tuple[Finding, ...]) -> list[tuple[Severity, int]]:
    return [(f.severity, f.model_id) for f in findings]


def test_a_clean_run_audits_ok_and_the_integrity_reject_is_only_information(run: AuditedRun) -> None:
    history = run.history()

    report = audit(history, run.store)

    assert report.ok
    assert report.lineage == (0, run.committed)
    assert report.models_checked == 4
    assert _kinds(report.findings) == [(Severity.INFO, run.broken)]
    assert hex_hash(history.candidates[run.broken].model_hash) in report.findings[0].what
    assert report.to_dict()["ok"] is True


@pytest.mark.parametrize("model", ["genesis", "committed"])
def test_a_flipped_byte_in_a_committed_blob_fails_naming_model_and_hash(run: AuditedRun, model: str) -> None:
    history = run.history()
    model_id = 0 if model == "genesis" else run.committed
    digest = history.candidates[model_id].model_hash
    path = run.blob_file(digest)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))

    report = audit(history, run.store)

    assert not report.ok
    assert [str(e) for e in report.errors] == [f"model {model_id}: model blob {hex_hash(digest)} is tampered"]


def test_a_deleted_committed_blob_fails(run: AuditedRun) -> None:
    history = run.history()
    digest = history.candidates[run.committed].model_hash
    run.blob_file(digest).unlink()

    report = audit(history, run.store)

    assert [str(e) for e in report.errors] == [f"model {run.committed}: model blob {hex_hash(digest)} is missing"]


def test_missing_metadata_and_report_of_a_committed_model_are_errors(run: AuditedRun) -> None:
    history = run.history()
    candidate = history.candidates[run.committed]
    assert candidate.report_hash is not None
    run.blob_file(candidate.metadata_hash).unlink()
    run.blob_file(candidate.report_hash).unlink()

    report = audit(history, run.store)

    assert _kinds(report.errors) == [(Severity.ERROR, run.committed)] * 2
    assert "metadata" in report.errors[0].what and "general's report" in report.errors[1].what


@pytest.mark.parametrize(("declaration", "damage"), [(0, "missing"), (1, "missing"), (1, "tampered")])
def test_every_declared_policy_must_be_in_the_vault_as_hashed(run: AuditedRun, declaration: int, damage: str) -> None:
    history = run.history()
    assert [p.from_model for p in history.policies] == [0, run.broken]
    policy = history.policies[declaration]
    path = run.blob_file(policy.hash)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes().replace(b"0.04", b"0.40"))

    report = audit(history, run.store)

    assert [str(e) for e in report.errors] == [
        f"model {policy.from_model}: the acceptance policy {hex_hash(policy.hash)} declared from this model on is "
        f"{damage}"
    ]


@pytest.mark.parametrize(("which", "severity"), [("committed", Severity.ERROR), ("voted_down", Severity.WARNING)])
def test_a_missing_evidence_blob_is_a_finding(run: AuditedRun, which: str, severity: Severity) -> None:
    history = run.history()
    model_id = getattr(run, which)
    vote = history.candidates[model_id].votes[0]
    run.blob_file(vote.evidence_hash).unlink()

    report = audit(history, run.store)

    evidence = [f for f in report.findings if "evidence" in f.what]
    assert _kinds(tuple(evidence)) == [(severity, model_id)]
    assert vote.validator in evidence[0].what and hex_hash(vote.evidence_hash) in evidence[0].what
    assert report.ok == (severity != Severity.ERROR)


def _flip_a_byte(run: AuditedRun, digest: bytes) -> None:
    path = run.blob_file(digest)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("blob", ["model blob", "metadata", "general's report", "evidence"])
def test_an_altered_blob_of_a_voted_down_candidate_fails_the_audit(run: AuditedRun, blob: str) -> None:
    """Altered evidence of a rejected poisoning attempt is a cover-up: an error, not a warning."""
    history = run.history()
    candidate = history.candidates[run.voted_down]
    assert candidate.state is ModelState.REJECTED and candidate.report_hash is not None
    digest = {
        "model blob": candidate.model_hash,
        "metadata": candidate.metadata_hash,
        "general's report": candidate.report_hash,
        "evidence": candidate.votes[0].evidence_hash,
    }[blob]
    _flip_a_byte(run, digest)

    report = audit(history, run.store)

    assert not report.ok
    assert [(e.model_id, e.what.endswith("is tampered")) for e in report.errors] == [(run.voted_down, True)]
    assert blob in report.errors[0].what and hex_hash(digest) in report.errors[0].what


def test_an_altered_metadata_blob_of_an_integrity_reject_fails_the_audit(run: AuditedRun) -> None:
    history = run.history()
    digest = history.candidates[run.broken].metadata_hash
    _flip_a_byte(run, digest)

    report = audit(history, run.store)

    assert _kinds(report.errors) == [(Severity.ERROR, run.broken)]
    assert f"metadata {hex_hash(digest)} is tampered" in report.errors[0].what


@pytest.mark.parametrize("blob", ["model blob", "metadata"])
def test_a_missing_blob_of_a_voted_down_candidate_stays_a_warning(run: AuditedRun, blob: str) -> None:
    history = run.history()
    candidate = history.candidates[run.voted_down]
    run.blob_file(candidate.model_hash if blob == "model blob" else candidate.metadata_hash).unlink()

    report = audit(history, run.store)

    assert report.ok
    mine = tuple(f for f in report.findings if f.model_id == run.voted_down)
    assert _kinds(mine) == [(Severity.WARNING, run.voted_down)] and f"{blob} " in mine[0].what


# ---- quorum and lineage rules on plain values ------------------------------------------------------------

P, A, B, C = "0xproposer", "0xa", "0xb", "0xc"


def _vote(validator: str, approve: bool = True) -> VoteRecord:
    return VoteRecord(validator, approve, 0.9, 0.8, b"\x01" * 32, 1)


def _with_votes(eligible: int, opened: bool, votes: list[VoteRecord]) -> CandidateHistory:
    report = b"\x03" * 32 if opened else None
    c = CandidateHistory(1, 0, P, b"\x02" * 32, b"\x00" * 32, "u", eligible, [A], ModelState.COMMITTED, report)
    c.votes.extend(votes)
    return c


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (_with_votes(3, True, [_vote(A), _vote(B)]), None),
        (_with_votes(4, True, [_vote(A), _vote(B), _vote(C, False)]), "short of 2/3"),
        (_with_votes(3, True, [_vote(A), _vote(A), _vote(B)]), "voted twice"),
        (_with_votes(3, True, [_vote(A), _vote(P), _vote(B)]), "proposer"),
        (_with_votes(3, False, [_vote(A), _vote(B)]), "without its general opening it"),
    ],
)
def test_quorum_rules(candidate: CandidateHistory, problem: str | None) -> None:
    findings = quorum_findings(candidate)

    assert [problem in f.what for f in findings] == ([] if problem is None else [True])
    assert all(f.severity == Severity.ERROR and f.model_id == 1 for f in findings)


def test_a_lineage_through_an_uncommitted_parent_is_an_error() -> None:
    history = LedgerHistory(head=2)
    genesis = CandidateHistory(0, 0, P, b"\x01" * 32, b"\x00" * 32, "u", 0, [P], ModelState.COMMITTED, None)
    parent = CandidateHistory(1, 0, P, b"\x02" * 32, b"\x00" * 32, "u", 3, [A], ModelState.REJECTED, b"\x03" * 32)
    head = CandidateHistory(2, 1, P, b"\x04" * 32, b"\x00" * 32, "u", 3, [A], ModelState.COMMITTED, b"\x05" * 32)
    parent.reject_reason = RejectReason.VOTES
    history.candidates = {0: genesis, 1: parent, 2: head}

    lineage, findings = committed_lineage(history)

    assert lineage == [1, 2]
    assert [str(f) for f in findings] == ["model 1: is on the lineage but rejected, not committed"]
