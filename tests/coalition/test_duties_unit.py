"""Unit twins of tests/coalition/test_duties.py: the member's, general's, validator's and keeper's duties on
the in-memory ledger, an in-memory vault and the stub backend of `fakes`, in milliseconds; and tables of the
pure decisions under them (integrity, policy, signatures, records)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import pytest
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tclearn.canonical import canonical_json
from tclearn.coalition import ballots
from tclearn.coalition import general as general_duty
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.blobs import put_record
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.fedavg import message, signature_problem
from tclearn.coalition.integrity import declared_problem, policy_problem
from tclearn.coalition.keeper import keep
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy, Scores
from tclearn.coalition.rounds import run_round, settle
from tclearn.errors import ConfigError, IntegrityError, NotFoundError, TrainingCancelled
from tclearn.learning.attacks import Attack
from tclearn.learning.train import CancelToken
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.memory import MemoryChain
from tclearn.records import (
    Aggregation,
    CandidateMetadata,
    Check,
    Contribution,
    DataSummary,
    IntegrityReport,
    Privacy,
    Record,
    StratumVerdict,
    TrainingFacts,
    VoteEvidence,
)
from tclearn.types import ModelState, RejectReason, Variant

from .fakes import DESCRIPTION, GENESIS_W, LOCAL_PENALTY, accounts, stub_backend, stub_coalition

GENERAL_TIMEOUT, VOTING_TIMEOUT = 3600, 86400  # InMemoryLedger's defaults
FACTS = TrainingFacts(8, 1, 8, "sgd", 0.1, 0, "stub", 2, 0.0, "cpu")


# ---- helpers ------------------------------------------------------------------------------------------------


def model_hash_of(co: Coalition, model_id: int) -> str:
    return co.client.get_model(model_id, with_uri=False).model_hash.hex()


def honest_metadata(co: Coalition, **changes: Any) -> CandidateMetadata:
    """What an honest member declares for an increment of the head (with `changes`)."""
    metadata = CandidateMetadata(
        variant="A",
        mode="incremental",
        parent=model_hash_of(co, co.client.head()),
        model=DESCRIPTION,
        training=FACTS,
        tclearn_version="test",
    )
    return dataclasses.replace(metadata, **changes)


def submit_blobs(co: Coalition, model_hash: str, metadata_hash: str) -> int:
    """Hospital 0 submits a candidate of the head with these (not necessarily stored) blobs."""
    head = co.client.head()
    submission = co.client.submit(
        co.hospitals[0].account, head, bytes.fromhex(model_hash), "u", bytes.fromhex(metadata_hash)
    )
    return submission.model_id


def submit_model(co: Coalition, w: float = GENESIS_W + 1, *, raw_metadata: bytes | None = None, **changes: Any) -> int:
    """Hospital 0 submits model `w` with honest metadata — its true update size declared — with `changes` (or
    the given raw metadata blob)."""
    backend = stub_backend(co)
    model_hash = backend.store_model({"w": w})
    size = backend.update_size(backend.open(co.hospitals[0], model_hash_of(co, co.client.head())), {"w": w})
    metadata = honest_metadata(co, **{"update_norm": size, **changes})
    return submit_blobs(
        co, model_hash, put_record(co, metadata) if raw_metadata is None else co.store.put(raw_metadata)
    )


def general_of(co: Coalition, model_id: int) -> Hospital:
    return co.hospital(co.client.get_model(model_id, with_uri=False).general)


def general_verdict(co: Coalition, model_id: int) -> tuple[bool, str, IntegrityReport]:
    """The drawn general opens (or rejects) the candidate; its report, read back from the vault."""
    candidate = co.client.get_model(model_id, with_uri=False)
    ok, report_hash, _ = general_duty.open_candidate(co, general_of(co, model_id), candidate)
    return ok, report_hash, IntegrityReport.parse(co.store.get(report_hash))


def events(co: Coalition, name: str, model_id: int) -> list[LedgerEvent]:
    return [e for e in co.client.events() if e.name == name and e.args["id"] == model_id]


def evidence(co: Coalition, model_id: int) -> list[VoteEvidence]:
    """The evidence of every vote on `model_id`: those on chain, then those signed and still in the ballot box."""
    on_chain = [e.args["evidenceHash"] for e in events(co, "Voted", model_id)]
    candidate = co.client.get_model(model_id)
    posted = [v.evidence_hash for v in ballots.collected(co, candidate) if v.evidence_hash not in on_chain]
    return [VoteEvidence.parse(co.store.get(h.hex())) for h in [*on_chain, *posted]]


def advance(co: Coalition, seconds: int) -> None:
    chain = co.client.chain
    assert isinstance(chain, MemoryChain)
    chain.advance_time(seconds)


def corrupt(co: Coalition, model_hash: str, data: bytes) -> None:
    """Overwrites a stored blob behind the store's back (the memory filesystem under `FsspecStore`)."""
    store: Any = co.store
    store.fs.pipe_file(store.blob_path(model_hash), data)


# ---- a round, duty by duty --------------------------------------------------------------------------------


def test_an_honest_round_commits() -> None:
    # Prepare
    co = stub_coalition()
    genesis_hash = model_hash_of(co, 0)
    # Execute
    row = run_round(co, co.hospitals[0])
    # Assert
    assert (row.state, row.approvals, row.rejections) == ("committed", 2, 0)
    assert co.client.head() == row.id == 1
    metadata = CandidateMetadata.parse(co.store.get(co.client.get_model(row.id).metadata_hash.hex()))
    assert (metadata.parent, metadata.variant, metadata.model, metadata.mode) == (
        genesis_hash,
        "A",
        DESCRIPTION,
        "incremental",
    )
    assert metadata.training.samples == 8 and metadata.data is not None and metadata.data.files == 1
    assert stub_backend(co).open(co.hospitals[1], model_hash_of(co, row.id))["w"] == GENESIS_W + 1
    (opened,) = events(co, "CandidateOpened", row.id)
    report = IntegrityReport.parse(co.store.get(opened.args["reportHash"].hex()))
    assert [c.name for c in report.checks] == [
        "blob",
        "metadata",
        "declared",
        "policy",
        "privacy",
        "weights",
        "watermark",
        "update",
    ]
    assert report.ok and metadata.update_norm == pytest.approx(1 / GENESIS_W)
    votes = evidence(co, row.id)
    assert [v.approve for v in votes] == [True, True]
    assert votes[0].validator == co.client.get_model(row.id).general  # the general votes first
    assert votes[0].candidate_global == pytest.approx(0.6) and votes[0].head_global == pytest.approx(0.5)
    assert votes[0].candidate_local == pytest.approx(0.6 - LOCAL_PENALTY) and votes[0].local_samples == 2


def test_a_sign_flipping_member_is_voted_down() -> None:
    # Prepare: no update bound, so that the validators see it (with one, the general refuses it: below)
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, max_update=0))
    co.hospitals[3].attack = Attack.SIGN_FLIP
    # Execute
    row = run_round(co, co.hospitals[3])
    # Assert
    assert row.byzantine and (row.state, row.approvals, row.rejections) == ("rejected", 0, 2)
    assert co.client.head() == 0
    (rejected,) = events(co, "Rejected", row.id)
    assert rejected.args["reason"] == RejectReason.VOTES
    assert all(v.candidate_global == 0.0 and "below the head's" in v.reason for v in evidence(co, row.id))


def test_a_candidate_worse_on_small_findings_only_is_voted_down_naming_the_stratum() -> None:
    # Prepare: strata of 2 images are judged (the stub's G holds 4); an honest round trains the genesis first
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, min_stratum=2))
    assert run_round(co, co.hospitals[0]).state == "committed"
    co.hospitals[3].attack = Attack.TARGETED
    # Execute
    row = run_round(co, co.hospitals[3])
    # Assert: better on G and L, rejected on G's small findings; L's strata of one image are shown, not judged
    assert row.byzantine and (row.state, row.approvals, row.rejections) == ("rejected", 0, 2)
    for v in evidence(co, row.id):
        assert v.candidate_global == pytest.approx(0.7) and v.head_global == pytest.approx(0.6)
        assert v.reason == "G finding:small 0.200 is 0.400 below the head's 0.600 (tolerance 0.15)"
        shown = {(s.set, s.name): s for s in v.strata}
        assert list(shown) == [
            ("G", "finding:small"),
            ("G", "finding:large"),
            ("L", "finding:small"),
            ("L", "finding:large"),
        ]
        small = shown[("G", "finding:small")]
        assert (small.samples, small.candidate, small.head, small.judged, small.ok) == (
            2,
            pytest.approx(0.2),
            pytest.approx(0.6),
            True,
            False,
        )
        assert shown[("G", "finding:large")].ok and shown[("G", "finding:large")].judged
        assert not shown[("L", "finding:small")].judged and shown[("L", "finding:small")].ok


def test_strata_are_not_judged_against_the_untrained_genesis() -> None:
    # the genesis' scores by stratum are the artefact of its initial bias: shown, never judged
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, min_stratum=2))
    co.hospitals[3].attack = Attack.TARGETED
    row = run_round(co, co.hospitals[3])
    assert row.state == "committed"
    for v in evidence(co, row.id):
        assert v.approve and not any(s.judged for s in v.strata)
        assert {(s.name, round(s.candidate or 0, 3)) for s in v.strata if s.set == "G"} == {
            ("finding:small", 0.1),
            ("finding:large", 0.6),
        }


def test_strata_that_do_not_match_the_head_s_are_a_rejection_with_that_reason_in_the_evidence() -> None:
    # Prepare: the head's scores as if measured on another G (its small findings of 3 images, not 2)
    co = stub_coalition()
    model_id = submit_model(co, 6.0)
    assert general_verdict(co, model_id)[0]
    validator = general_of(co, model_id)
    head = validator_duty.head_scores(co, validator, 0)
    resized = tuple(dataclasses.replace(s, samples=3) if s.key == ("G", "finding:small") else s for s in head.strata)
    co.head_scores[(validator.address, 0)] = dataclasses.replace(head, strata=resized)
    # Execute
    assessment = validator_duty.vote(co, validator, co.client.get_model(model_id)).assessment
    # Assert: better on G and L, and rejected all the same: the strata could not be compared
    assert not assessment.approve
    (shown,) = evidence(co, model_id)
    assert shown.candidate_global == pytest.approx(0.6) and not shown.approve
    assert (
        shown.reason == "the strata were not measured on the same data as the head's: G finding:small of another size"
    )
    small = next(s for s in shown.strata if s.name == "finding:small" and s.set == "G")
    assert (small.samples, small.judged, small.ok) == (3, False, False)


def test_strata_below_min_stratum_are_shown_but_not_judged() -> None:
    co = stub_coalition()  # min_stratum 8: no stratum of the stub's sets is judged
    co.hospitals[3].attack = Attack.TARGETED
    row = run_round(co, co.hospitals[3])
    assert row.state == "committed"
    votes = evidence(co, row.id)
    assert votes and all(len(v.strata) == 4 and not any(s.judged for s in v.strata) for v in votes)
    assert all(s.ok and s.tolerance == 0.15 for v in votes for s in v.strata)


# ---- the general ---------------------------------------------------------------------------------------------


def assert_rejected_for(co: Coalition, model_id: int, check: str, detail: str) -> IntegrityReport:
    """The general rejected `model_id` at `check` (the last it ran), and the chain holds its report's hash."""
    ok, report_hash, report = general_verdict(co, model_id)
    assert not ok and not report.ok
    assert report.checks[-1] == Check(check, False, report.checks[-1].detail)
    assert all(c.ok for c in report.checks[:-1])  # the checks before it passed, none after it ran
    assert detail in report.checks[-1].detail, report.checks[-1].detail
    assert (report.candidate, report.model_hash, report.general) == (
        model_id,
        model_hash_of(co, model_id),
        co.client.get_model(model_id).general,
    )
    assert co.client.get_model(model_id).state is ModelState.REJECTED
    (rejected,) = events(co, "Rejected", model_id)
    assert rejected.args["reason"] == RejectReason.INTEGRITY
    assert rejected.args["evidenceHash"].hex() == report_hash == report.sha256()
    return report


def test_the_general_opens_an_honest_candidate_and_the_chain_holds_its_report() -> None:
    co = stub_coalition()
    model_id = submit_model(co)
    ok, report_hash, report = general_verdict(co, model_id)
    assert ok and report.ok and all(c.ok for c in report.checks) and len(report.checks) == 8
    assert Check("watermark", True, "the coalition has no watermark") in report.checks
    assert co.client.get_model(model_id).state is ModelState.OPEN
    (opened,) = events(co, "CandidateOpened", model_id)
    assert opened.args["reportHash"].hex() == report_hash == report.sha256()


def test_a_missing_blob_is_rejected() -> None:
    co = stub_coalition()
    absent = hashlib.sha256(b"a model nobody stored").hexdigest()
    model_id = submit_blobs(co, absent, put_record(co, honest_metadata(co)))
    assert_rejected_for(co, model_id, "blob", "is not in the vault")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"not json at all", "does not parse"),
        (b'{"schema": 1}', "Field required"),
        (b'{"parent": null, "variant": "A", "training": {"batch_size": 8}}', "does not parse"),
    ],
)
def test_metadata_that_does_not_parse_is_an_integrity_failure(raw: bytes, detail: str) -> None:
    co = stub_coalition()
    assert_rejected_for(co, submit_model(co, raw_metadata=raw), "metadata", detail)


@pytest.mark.parametrize(
    ("edit", "detail"),
    [
        (lambda doc: doc.update(schema=2), "schema 2"),
        (lambda doc: doc.update(extra="smuggled"), "extra"),
        (lambda doc: doc["training"].update(batch_size="8"), "training.batch_size"),
    ],
    ids=["other schema", "extra field", "wrong type"],
)
def test_metadata_that_is_almost_right_is_refused(edit: Any, detail: str) -> None:
    co = stub_coalition()
    doc = json.loads(honest_metadata(co).encode())
    edit(doc)
    assert_rejected_for(co, submit_model(co, raw_metadata=canonical_json(doc)), "metadata", detail)


def test_a_metadata_hash_nothing_was_stored_under_is_rejected() -> None:
    co = stub_coalition()
    model_hash = stub_backend(co).store_model({"w": 6.0})
    model_id = submit_blobs(co, model_hash, hashlib.sha256(b"metadata nobody stored").hexdigest())
    assert_rejected_for(co, model_id, "metadata", "no blob")


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"parent": "00" * 32}, "names parent"),
        ({"variant": "B"}, "declares variant B"),
        ({"model": dataclasses.replace(DESCRIPTION, fingerprint="00" * 32)}, "declares model"),
    ],
    ids=["parent", "variant", "model"],
)
def test_metadata_that_lies_is_rejected(changes: dict[str, Any], detail: str) -> None:
    co = stub_coalition()
    model_id = submit_model(co, raw_metadata=honest_metadata(co, **changes).encode())
    assert_rejected_for(co, model_id, "declared", detail)


def test_a_batch_below_policy_is_rejected() -> None:
    co = stub_coalition()
    small = dataclasses.replace(FACTS, batch_size=2)
    model_id = submit_model(co, raw_metadata=honest_metadata(co, training=small).encode())
    assert_rejected_for(co, model_id, "policy", "below the coalition's minimum 4")


@pytest.mark.parametrize(
    ("blob", "detail"),
    [
        (b"\x00\xff not json", "does not decode"),
        (b"[1, 2, 3]", "not the coalition's model"),
        (b'{"w": NaN}', "non-finite"),
    ],
    ids=["undecodable", "another model", "nan"],
)
def test_a_model_that_does_not_open_is_rejected(blob: bytes, detail: str) -> None:
    co = stub_coalition()
    model_id = submit_blobs(co, co.store.put(blob), put_record(co, honest_metadata(co)))
    assert_rejected_for(co, model_id, "weights", detail)


def test_a_corrupted_model_blob_is_rejected() -> None:
    co = stub_coalition()
    model_id = submit_model(co, 6.0)
    corrupt(co, model_hash_of(co, model_id), canonical_json({"w": 7.0}))
    assert_rejected_for(co, model_id, "weights", "is corrupt")


@pytest.mark.parametrize(
    ("w", "changes", "detail"),
    [
        (GENESIS_W + 1, {"update_norm": None}, "the candidate declares no update size"),
        (GENESIS_W + 1, {"update_norm": 0.1}, "declares an update size of 0.1, but it is 0.2"),
        (GENESIS_W * 4, {}, "the update is 3 of its parent's norm, beyond the coalition's bound 2 (max_update)"),
        (-GENESIS_W - 1, {}, "the update is 2.2 of its parent's norm"),  # a sign flip of the head
    ],
)
def test_a_wrong_or_oversized_update_is_refused_before_any_vote(w: float, changes: dict[str, Any], detail: str) -> None:
    co = stub_coalition()
    model_id = submit_model(co, w, **changes)
    assert_rejected_for(co, model_id, "update", detail)
    assert evidence(co, model_id) == []


def test_an_update_within_a_wider_bound_is_opened() -> None:
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, max_update=3.5))
    ok, _, report = general_verdict(co, submit_model(co, GENESIS_W * 4))
    assert ok and report.checks[-1] == Check("update", True, "")


def test_a_variant_that_cannot_measure_updates_says_so_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    co = stub_coalition()
    monkeypatch.setattr(stub_backend(co), "update_size", lambda parent, model: None)  # as variant C's backend
    ok, _, report = general_verdict(co, submit_model(co, GENESIS_W * 3, update_norm=None))
    assert ok and report.checks[-1].name == "update" and report.checks[-1].ok
    assert report.checks[-1].detail.startswith("not measured: variant A weights are not readable in clear")


def test_a_sign_flipping_member_is_refused_by_the_general() -> None:
    co = stub_coalition()
    co.hospitals[3].attack = Attack.SIGN_FLIP
    row = run_round(co, co.hospitals[3])
    assert (row.state, row.approvals, row.rejections) == ("rejected", 0, 0)
    (rejected,) = events(co, "Rejected", row.id)
    report = IntegrityReport.parse(co.store.get(rejected.args["evidenceHash"].hex()))
    assert report.checks[-1].name == "update" and "beyond the coalition's bound" in report.checks[-1].detail


# ---- the validator ---------------------------------------------------------------------------------------


def test_a_validator_rejects_a_candidate_it_cannot_open() -> None:
    # Prepare: the general opened it, then its blob was damaged in the vault
    co = stub_coalition()
    model_id = submit_model(co, 6.0)
    assert general_verdict(co, model_id)[0]
    corrupt(co, model_hash_of(co, model_id), canonical_json({"w": 7.0}))
    candidate = co.client.get_model(model_id)
    # Execute
    cast = validator_duty.vote(co, general_of(co, model_id), candidate)
    # Assert
    assessment = cast.assessment
    assert not assessment.approve and assessment.candidate is None and cast.state is None  # one vote decides nothing
    assert cast.signed is not None and not cast.signed.approve
    (shown,) = evidence(co, model_id)
    assert shown.candidate_global is None and shown.candidate_local is None and not shown.approve
    assert shown.reason.startswith("cannot open the candidate") and "corrupt" in shown.reason
    assert shown.head_global == pytest.approx(0.5)
    (posted,) = ballots.collected(co, candidate)  # signed, in the ballot box until a deciding set goes on chain
    assert (posted.approve, posted.score_global, posted.score_local) == (False, 0, 0)


@pytest.mark.parametrize(("max_drift", "committed"), [(0.05, [1, None]), (1.0, [1, 2, 3, 4])])
def test_a_drifting_member_is_stopped_by_the_lineage_not_by_its_parent(
    max_drift: float, committed: list[int | None]
) -> None:
    # Prepare: every increment costs G 0.028, under the 0.03 tolerance against its parent
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, max_drift=max_drift))
    co.hospitals[3].attack = Attack.DRIFT
    # Execute
    rows = [run_round(co, co.hospitals[3]) for _ in committed]
    # Assert: with a drift bound only the first step commits; without one the head walks down 4 x 0.028
    assert [r.id if r.state == "committed" else None for r in rows] == committed
    if max_drift < 1:
        (shown, *_) = evidence(co, rows[1].id)
        assert not shown.approve and "below the best committed model's 0.500 (tolerance 0.05)" in shown.reason
        assert "below the head's" not in shown.reason  # against its parent alone it would pass
        assert (shown.best_global, shown.max_drift, shown.policy) == (pytest.approx(0.5), 0.05, co.policy.sha256())
    assert validator_duty.lineage_of(co, co.hospitals[0], co.client.head()).best == pytest.approx(0.5)


def test_a_member_drifting_between_honest_commits_is_stopped_by_its_own_cumulative_change() -> None:
    # Prepare: honest increments raise G by 0.1, the drifter's each cost 0.028 — never 0.05 below the best
    co = stub_coalition()
    co.hospitals[3].attack = Attack.DRIFT
    # Execute
    rows = [run_round(co, co.hospitals[i]) for i in (0, 3, 1, 3)]
    # Assert: its second drift step walks G down by 0.056 in all: rejected, though within 0.05 of the best
    assert [r.state for r in rows] == ["committed", "committed", "committed", "rejected"]
    for v in evidence(co, rows[3].id):
        assert not v.approve and v.proposer_change == pytest.approx(-0.028)
        assert v.reason == "its proposer's committed increments and this one change G by -0.056 in all (tolerance 0.05)"
    lineage = validator_duty.lineage_of(co, co.hospitals[0], co.client.head())
    assert lineage.changes[co.hospitals[3].address] == pytest.approx(-0.028)
    assert lineage.changes[co.hospitals[1].address] == pytest.approx(0.1)


def test_the_lineage_best_is_walked_once_per_validator() -> None:
    co = stub_coalition()
    rows = [run_round(co, co.hospitals[i % 3]) for i in range(3)]
    assert [r.state for r in rows] == ["committed"] * 3
    reads = co.client.get_model
    calls: list[int] = []
    co.client.get_model = lambda i, **kw: calls.append(i) or reads(i, **kw)  # type: ignore[method-assign]
    first = co.hospitals[3]
    assert validator_duty.lineage_of(co, first, co.client.head()).best == pytest.approx((GENESIS_W + 3) / 10)
    walked = len(calls)
    assert validator_duty.lineage_of(co, first, co.client.head()).best == pytest.approx((GENESIS_W + 3) / 10)
    assert len(calls) == walked  # cached


def test_head_scores_are_measured_once_per_validator() -> None:
    co = stub_coalition()
    backend, genesis = stub_backend(co), model_hash_of(co, 0)
    first, second = co.hospitals[1], co.hospitals[2]
    scores = validator_duty.head_scores(co, first, 0)
    assert (scores.global_, scores.local) == (0.5, 0.5 - LOCAL_PENALTY)
    assert [(s.set, s.name, s.samples) for s in scores.strata] == [  # G of 4 images, L of 2
        ("G", "finding:small", 2),
        ("G", "finding:large", 2),
        ("L", "finding:small", 1),
        ("L", "finding:large", 1),
    ]
    validator_duty.head_scores(co, first, 0)
    validator_duty.head_scores(co, second, 0)
    assert backend.scored[(first.address, genesis)] == 2  # G and L, once
    assert backend.scored[(second.address, genesis)] == 2  # its own L: its own measurement


def test_a_committed_candidate_is_not_scored_again_as_the_head() -> None:
    # Prepare: candidate 1 commits; its voters scored it as a candidate
    co = stub_coalition()
    backend = stub_backend(co)
    first = run_round(co, co.hospitals[0])
    voters = [co.hospital(v.validator) for v in evidence(co, first.id)]
    idle = next(h for h in co.hospitals[1:] if h not in voters)
    # Execute: the validator that did not vote proposes the next candidate, of head 1
    second = run_round(co, idle)
    # Assert
    assert second.state == "committed"
    head1 = model_hash_of(co, first.id)
    for v in voters:
        assert backend.scored[(v.address, head1)] == 2  # as the candidate, never again as the head
    for h in co.hospitals:
        assert backend.scored[(h.address, head1)] in (0, 2)


# ---- the keeper ------------------------------------------------------------------------------------------


def test_a_silent_general_is_replaced_and_the_new_one_opens_the_candidate() -> None:
    co = stub_coalition()
    model_id = propose(co, co.hospitals[0]).submission.model_id
    silent = co.client.get_model(model_id).general
    keeper = co.hospitals[0].account
    assert keep(co.client, keeper, model_id, co.client.chain.timestamp()) is None  # not yet
    advance(co, GENERAL_TIMEOUT + 1)
    assert keep(co.client, keeper, model_id, co.client.chain.timestamp()) == "reassigned"
    candidate = co.client.get_model(model_id)
    assert candidate.general not in (silent, co.hospitals[0].address)
    assert candidate.state is ModelState.SUBMITTED
    assert general_verdict(co, model_id)[0]
    assert co.client.get_model(model_id).state is ModelState.OPEN


def test_a_candidate_nobody_votes_on_expires_after_the_voting_deadline() -> None:
    co = stub_coalition()
    model_id = propose(co, co.hospitals[0]).submission.model_id
    assert general_verdict(co, model_id)[0]
    keeper = co.hospitals[0].account
    advance(co, VOTING_TIMEOUT)
    assert keep(co.client, keeper, model_id, co.client.chain.timestamp()) is None  # on the deadline itself
    advance(co, 1)
    assert keep(co.client, keeper, model_id, co.client.chain.timestamp()) == "expired"
    assert co.client.get_model(model_id).state is ModelState.EXPIRED
    assert keep(co.client, keeper, model_id, co.client.chain.timestamp()) is None
    assert co.client.head() == 0


def test_a_candidate_with_no_other_general_to_draw_expires() -> None:
    co = stub_coalition(members=2)  # the proposer and its one general
    model_id = propose(co, co.hospitals[0]).submission.model_id
    advance(co, GENERAL_TIMEOUT + 1)
    assert keep(co.client, co.hospitals[0].account, model_id, co.client.chain.timestamp()) == "expired"
    assert co.client.get_model(model_id).state is ModelState.EXPIRED


# ---- the member ------------------------------------------------------------------------------------------


def test_a_candidate_that_goes_stale_is_rebased() -> None:
    # Prepare: hospital 1's candidate of genesis is overtaken by hospital 0's
    co = stub_coalition()
    late = propose(co, co.hospitals[1])
    assert run_round(co, co.hospitals[0]).state == "committed"
    # Execute
    co.client.mark_stale(co.hospitals[2].account, late.submission.model_id)
    again = propose(co, co.hospitals[1])
    # Assert
    assert co.client.get_model(late.submission.model_id).state is ModelState.STALE
    candidate = co.client.get_model(again.submission.model_id)
    assert candidate.parent_id == co.client.head() == 2
    metadata = CandidateMetadata.parse(co.store.get(again.metadata_hash))
    assert metadata.parent == model_hash_of(co, co.client.head())
    assert stub_backend(co).open(co.hospitals[1], again.model_hash)["w"] == GENESIS_W + 2


def test_a_member_whose_head_moves_while_it_trains_rebases_and_submits_on_the_new_head() -> None:
    # Prepare: just before hospital 1 submits its increment of genesis, hospital 2's candidate commits
    co = stub_coalition()
    overtaken: list[int] = []

    def someone_commits_first(phase: str, done: float) -> None:
        if phase == "submitting" and done == 0.0 and not overtaken:
            overtaken.append(run_round(co, co.hospitals[2]).id)

    # Execute
    proposal = propose(co, co.hospitals[1], progress=someone_commits_first)
    # Assert
    assert proposal.rebases == 1 and co.client.head() == overtaken[0]
    assert co.client.get_model(proposal.submission.model_id).parent_id == overtaken[0]
    metadata = CandidateMetadata.parse(co.store.get(proposal.metadata_hash))
    assert metadata.parent == model_hash_of(co, overtaken[0])


def test_propose_reports_its_phases_and_a_cancel_submits_nothing() -> None:
    co = stub_coalition()
    phases: list[tuple[str, float]] = []
    proposal = propose(co, co.hospitals[0], progress=lambda phase, done: phases.append((phase, done)))
    assert [p for p, done in phases if done == 0.0] == ["pulling", "training", "storing", "submitting"]
    assert ("training", 0.5) in phases and ("training", 1.0) in phases and phases[-1] == ("submitting", 1.0)
    count = co.client.model_count()
    assert count == proposal.submission.model_id + 1

    token = CancelToken()
    cancel_when_stored = lambda phase, _done: token.cancel() if phase == "storing" else None  # noqa: E731
    with pytest.raises(TrainingCancelled, match="before submitting"):
        propose(co, co.hospitals[1], cancel=token, progress=cancel_when_stored)
    assert co.client.model_count() == count


def test_a_cancelled_token_stops_before_anything_is_pulled() -> None:
    co = stub_coalition()
    token = CancelToken()
    token.cancel()
    with pytest.raises(TrainingCancelled, match="before pulling"):
        propose(co, co.hospitals[0], cancel=token)
    assert co.client.model_count() == 1


# ---- per-site contexts -----------------------------------------------------------------------------------


def sites(co: Coalition) -> list[tuple[Coalition, Hospital]]:
    """One context per hospital, as separate services hold them: the same ledger and vault, its own caches."""
    return [(dataclasses.replace(co, head_scores={}), h) for h in co.hospitals]


def test_settle_over_per_site_contexts_commits() -> None:
    co = stub_coalition()
    contexts = sites(co)
    model_id = propose(contexts[0][0], co.hospitals[0]).submission.model_id
    assert settle(contexts, model_id) is ModelState.COMMITTED
    assert co.client.head() == model_id
    for site, h in contexts:
        assert {address for address, _ in site.head_scores} <= {h.address}  # each site measured for itself


def test_settle_rejects_a_poisoned_candidate() -> None:
    co = stub_coalition()
    co.hospitals[3].attack = Attack.SIGN_FLIP
    model_id = propose(co, co.hospitals[3]).submission.model_id
    assert settle(sites(co), model_id) is ModelState.REJECTED
    assert co.client.head() == 0


def test_settle_without_the_general_among_the_sites_names_it() -> None:
    co = stub_coalition()
    model_id = propose(co, co.hospitals[0]).submission.model_id
    general = co.client.get_model(model_id).general
    with pytest.raises(NotFoundError, match=general):
        settle([s for s in sites(co) if s[1].address != general], model_id)


# ---- pure decisions: integrity and policy ------------------------------------------------------------------

PARENT = "aa" * 32
DECLARED = CandidateMetadata("A", "incremental", PARENT, DESCRIPTION, FACTS, "test")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"parent": "00" * 32}, f"metadata names parent {'00' * 32}, but the candidate's parent is {PARENT}"),
        ({"variant": "B"}, "metadata declares variant B, the coalition is A"),
        ({"model": dataclasses.replace(DESCRIPTION, family="torch")}, "metadata declares model"),
        ({"model": dataclasses.replace(DESCRIPTION, config={})}, "metadata declares model"),
        ({"parent": "00" * 32, "variant": "B"}, "metadata names parent"),  # the parent is checked first
        ({"mode": "fedavg", "tclearn_version": "0"}, None),  # neither is a declared fact the general checks
    ],
)
def test_declared_problem(changes: dict[str, Any], problem: str | None) -> None:
    found = declared_problem(
        dataclasses.replace(DECLARED, **changes), parent_hash=PARENT, variant=Variant.A, model=DESCRIPTION
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize(
    ("batch", "minimum", "problem"),
    [
        (8, 4, None),
        (4, 4, None),
        (3, 4, "declared batch size 3 is below the coalition's minimum 4"),
        (1, 1, None),
        (1, 2, "declared batch size 1 is below the coalition's minimum 2"),
    ],
)
def test_policy_problem(batch: int, minimum: int, problem: str | None) -> None:
    metadata = dataclasses.replace(DECLARED, training=dataclasses.replace(FACTS, batch_size=batch))
    assert policy_problem(metadata, AcceptancePolicy(min_batch_size=minimum)) == problem


HEAD = Scores(0.5, 0.5)
APPROVED = "not worse than the head beyond tolerance, on G, L and every stratum, nor drifted"


@pytest.mark.parametrize(
    ("candidate", "approve", "reason"),
    [
        (None, False, "the candidate could not be scored"),
        (Scores(0.5, 0.5), True, APPROVED),
        (Scores(0.9, 0.9), True, APPROVED),
        (Scores(0.48, 0.5), True, APPROVED),  # within 0.03 on G
        (Scores(0.46, 0.5), False, "G 0.460 is 0.040 below the head's 0.500 (tolerance 0.03)"),
        (Scores(0.5, 0.41), True, APPROVED),  # within 0.10 on L
        (Scores(0.5, 0.39), False, "L 0.390 is 0.110 below the head's 0.500 (tolerance 0.1)"),
        # better on G does not buy L
        (Scores(0.9, 0.3), False, "L 0.300 is 0.200 below the head's 0.500 (tolerance 0.1)"),
        (
            Scores(0.1, 0.9),
            False,
            "G 0.100 is 0.400 below the head's 0.500 (tolerance 0.03); "
            "G 0.100 is 0.400 below the best committed model's 0.500 (tolerance 0.05)",
        ),
    ],
)
def test_acceptance_verdict(candidate: Scores | None, approve: bool, reason: str) -> None:
    assert AcceptancePolicy(0.03, 0.10).verdict(candidate, HEAD) == (approve, reason)


@pytest.mark.parametrize(
    ("measured", "declared", "bound", "problem"),
    [
        (0.2, 0.2, 1.0, None),
        (0.2, 0.20000001, 1.0, None),  # within the declaration's rounding
        (0.2, None, 1.0, "declares no update size"),
        (0.2, 0.3, 1.0, "declares an update size of 0.3, but it is 0.2"),
        (1.0, 1.0, 1.0, None),  # the bound itself passes
        (1.5, 1.5, 1.0, "the update is 1.5 of its parent's norm, beyond the coalition's bound 1"),
        (50.0, 50.0, 0.0, None),  # 0: no bound
        (math.inf, 1.0, 1.0, "beyond the coalition's bound"),
        (math.nan, 1.0, 1.0, "beyond the coalition's bound"),
    ],
)
def test_update_problem(measured: float, declared: float | None, bound: float, problem: str | None) -> None:
    found = AcceptancePolicy(max_update=bound).update_problem(measured, declared)
    assert found == problem if problem is None else (found is not None and problem in found)


def test_a_policy_with_no_tolerance_accepts_only_as_good() -> None:
    strict = AcceptancePolicy(0.0, 0.0)
    assert strict.verdict(Scores(0.5, 0.5), HEAD)[0] and not strict.verdict(Scores(0.5, 0.4999), HEAD)[0]


@pytest.mark.parametrize(
    "settings",
    [{"tolerance_global": -0.01}, {"tolerance_global": 1.5}, {"tolerance_local": 2.0}, {"min_batch_size": 0}],
)
def test_an_impossible_policy_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(settings))):
        AcceptancePolicy(**settings)


# ---- pure decisions: contribution signatures ---------------------------------------------------------------

CHAIN_ID, CONTRACT, ROUND = 1337, "0x" + "Ab" * 20, 7


def contribution(signer: LocalAccount, label: str, *, parent: int = ROUND, member: str | None = None) -> Contribution:
    """`signer`'s contribution `label`, signed as `fedavg.contribute` signs it (naming `member` if given)."""
    model_hash = hashlib.sha256(label.encode()).hexdigest()
    text = message(CHAIN_ID, CONTRACT, parent, model_hash)
    signature = "0x" + signer.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")
    return Contribution(member or signer.address, model_hash, 8, 8, signature)


def signatures(contributions: list[Contribution], parent: int = ROUND) -> str | None:
    active: set[str] = {a.address for a in accounts(6)[1:4]}
    return signature_problem(contributions, chain_id=CHAIN_ID, contract=CONTRACT, parent_id=parent, active=active)


def test_validly_signed_contributions_pass() -> None:
    a, b, c = accounts(6)[1:4]
    assert signatures([contribution(a, "a"), contribution(b, "b"), contribution(c, "c")]) is None


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("signer", "not by the member it names"),  # claims another member's name for its contribution
        ("stranger", "not an active member"),  # signed by an account that is not a member
        ("twice", "contributes twice"),
        ("other parent", "is signed by"),  # replayed into another round: each signature binds its parent
        ("none", "the aggregate lists no contributions"),
    ],
)
def test_forged_contribution_lists_are_caught(tamper: str, problem: str) -> None:
    _admin, a, b, c, _, stranger = accounts(6)
    entries, parent = [contribution(a, "a"), contribution(b, "b")], ROUND
    if tamper == "signer":
        entries[0] = dataclasses.replace(entries[0], member=c.address)
    elif tamper == "stranger":
        entries[0] = contribution(stranger, "s")
    elif tamper == "twice":
        entries[1] = contribution(a, "a again")
    elif tamper == "other parent":
        parent += 1
    elif tamper == "none":
        entries = []
    found = signatures(entries, parent)
    assert found is not None and problem in found


@pytest.mark.parametrize("signature", ["zz", "0x1234", "0x" + "00" * 65, "0x" + "ff" * 65, ""])
def test_an_unreadable_signature_is_a_problem_not_a_crash(signature: str) -> None:
    a = accounts(6)[1]
    found = signatures([dataclasses.replace(contribution(a, "a"), signature=signature)])
    assert found is not None and "unreadable signature" in found


# ---- records -------------------------------------------------------------------------------------------------

FULL_METADATA = CandidateMetadata(
    variant="A",
    mode="fedavg",
    parent=PARENT,
    model=DESCRIPTION,
    training=dataclasses.replace(FACTS, final_loss=0.25, amp=True),
    tclearn_version="1.2.3",
    data=DataSummary("cd" * 32, 3, 1024),
    scores={"dice": 0.75},
    aggregation=Aggregation("median", (Contribution("0x" + "12" * 20, "ef" * 32, 8, 4, "0x99"),)),
    privacy=Privacy("dp-sgd", "rdp", "sample", 1.1, 1.0, 0.25, 40, 1e-5, 2.5, 32),
    watermark="wm",
)
RECORDS: list[Record] = [
    FACTS,
    DECLARED,
    FULL_METADATA,
    IntegrityReport(3, "ef" * 32, "0x" + "34" * 20, False, (Check("blob", True), Check("metadata", False, "no"))),
    VoteEvidence(3, 2, "0x" + "56" * 20, "dice", None, None, 0.5, 0.45, 0.03, 0.1, 2, False, "cannot open"),
    VoteEvidence(3, 2, "0x" + "56" * 20, "dice", 0.6, 0.55, 0.5, 0.45, 0.03, 0.1, 2, True, "fine"),
    VoteEvidence(
        *(3, 2, "0x" + "56" * 20, "dice", 0.6, 0.55, 0.5, 0.45, 0.03, 0.1, 2, False, "G finding:small ..."),
        strata=(
            StratumVerdict("G", "finding:small", 12, 0.25, 0.5, 0.15, True, False),
            StratumVerdict("G", "finding:none", 3, None, 1.0, 0.15, False, False),
        ),
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_round_trips_through_its_encoding(record: Record) -> None:
    raw = record.encode()
    assert type(record).parse(raw) == record
    assert raw == canonical_json(json.loads(raw))  # one canonical encoding
    assert record.sha256() == hashlib.sha256(raw).hexdigest()


def test_evidence_written_before_strata_still_reads() -> None:
    doc = json.loads(RECORDS[5].encode())
    del doc["strata"]
    assert VoteEvidence.parse(json.dumps(doc).encode()) == RECORDS[5]


def test_the_encoding_does_not_depend_on_key_order() -> None:
    doc = json.loads(FULL_METADATA.encode())
    reordered = json.dumps(dict(reversed(list(doc.items())))).encode()
    assert CandidateMetadata.parse(reordered).encode() == FULL_METADATA.encode()


def edited(record: Record, edit: Any) -> bytes:
    doc = json.loads(record.encode())
    edit(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        (CandidateMetadata, edited(DECLARED, lambda d: d.update(extra=1)), "extra: Unexpected keyword argument"),
        (CandidateMetadata, edited(DECLARED, lambda d: d["training"].update(epochs="1")), "training.epochs:"),
        (CandidateMetadata, edited(DECLARED, lambda d: d["training"].pop("seed")), "training.seed: Field required"),
        (CandidateMetadata, edited(DECLARED, lambda d: d.update(mode="async")), "mode:"),
        (CandidateMetadata, edited(DECLARED, lambda d: d.update(schema=2)), "has schema 2; this node reads 1"),
        (IntegrityReport, edited(RECORDS[3], lambda d: d.update(ok="yes")), "ok:"),
        (IntegrityReport, edited(RECORDS[3], lambda d: d["checks"][1].pop("name")), "checks.1.name: Field required"),
        (VoteEvidence, edited(RECORDS[4], lambda d: d.update(head_global=None)), "head_global:"),
        (VoteEvidence, edited(RECORDS[4], lambda d: d.update(schema=0)), "has schema 0"),
        (VoteEvidence, edited(RECORDS[6], lambda d: d["strata"][0].pop("judged")), "strata.0.judged: Field required"),
        (VoteEvidence, b"[]", "does not parse"),
        (VoteEvidence, b"\xff", "does not parse"),
        (TrainingFacts, DECLARED.encode(), "does not parse"),  # another kind of record
    ],
)
def test_a_wrong_record_is_refused_naming_what_is_wrong(kind: type[Record], raw: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=f"^the {kind.KIND} ") as info:
        kind.parse(raw)
    assert message in str(info.value), str(info.value)
