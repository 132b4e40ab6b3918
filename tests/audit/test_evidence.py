"""Each vote's evidence read back from the vault, and its strata in the auditor's model view and the report: on
the stub coalition, where a targeted candidate is voted down on G's small findings."""

from __future__ import annotations

import dataclasses
from html import escape
from pathlib import Path

import pytest

from tclearn.audit.evidence import all_evidence, votes_evidence
from tclearn.audit.report import write_report
from tclearn.audit.views import model_json
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import run_round
from tclearn.learning.attacks import Attack
from tclearn.ledger.history import LedgerHistory, rebuild
from tclearn.records import StratumVerdict
from tclearn.vault.store import BlobStore
from tests.audit.conftest import AuditedRun
from tests.coalition.fakes import stub_coalition

EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def targeted() -> tuple[LedgerHistory, BlobStore, int]:
    """A stub coalition whose second round is a targeted candidate, rejected on G's small findings (the first, an
    honest one, trains the genesis: strata are not judged against an untrained model)."""
    co = stub_coalition(policy=AcceptancePolicy(min_batch_size=4, min_stratum=2))
    assert run_round(co, co.hospitals[0]).state == "committed"
    co.hospitals[3].attack = Attack.TARGETED
    row = run_round(co, co.hospitals[3])
    assert row.state == "rejected"
    return rebuild(co.client.events()), co.store, row.id


def test_every_vote_s_evidence_is_read_back(targeted: tuple[LedgerHistory, BlobStore, int]) -> None:
    history, store, model_id = targeted
    evidence = all_evidence(store, history)
    assert set(evidence) == {1, model_id}  # genesis has no votes
    votes = history.candidates[model_id].votes
    assert set(evidence[model_id]) == {v.validator for v in votes}
    assert all(e.candidate == model_id and not e.approve for e in evidence[model_id].values())


def test_evidence_that_does_not_parse_is_left_out(run: AuditedRun) -> None:
    history = run.history()  # its evidence blobs are JSON, not vote evidence
    assert history.candidates[run.voted_down].votes
    assert votes_evidence(run.store, history.candidates[run.voted_down]) == {}


def test_the_model_view_shows_each_vote_s_reason_and_strata(targeted: tuple[LedgerHistory, BlobStore, int]) -> None:
    history, store, model_id = targeted
    view = model_json(history, model_id, [], votes_evidence(store, history.candidates[model_id]))
    for vote in view["votes"]:
        assert vote["reason"].startswith("G finding:small 0.200 is 0.400 below the head's 0.600")
        assert [(s["set"], s["name"], s["outcome"]) for s in vote["strata"]] == [
            ("G", "finding:small", "fails"),
            ("G", "finding:large", "ok"),
            ("L", "finding:small", "not judged"),
            ("L", "finding:large", "not judged"),
        ]
        assert vote["strata"][0]["candidate"] == pytest.approx(0.2) and vote["strata"][0]["head"] == pytest.approx(0.6)
    bare = model_json(history, model_id, [])  # without evidence: no reason, no strata
    assert all(v["reason"] is None and v["strata"] == [] for v in bare["votes"])


def test_the_report_shows_a_table_of_strata_per_vote(
    targeted: tuple[LedgerHistory, BlobStore, int], tmp_path: Path
) -> None:
    history, store, model_id = targeted
    evidence = all_evidence(store, history)
    validator, first = next(iter(evidence[model_id].items()))
    evidence[model_id][validator] = dataclasses.replace(
        first, reason=EVIL, strata=(*first.strata, StratumVerdict("G", EVIL, 9, None, 0.5, 0.15, False, False))
    )
    html = write_report(tmp_path, history, {}, evidence=evidence).read_text()
    assert "<h2>Votes by stratum</h2>" in html and f"<h3>Model {model_id}</h3>" in html
    votes = len(history.candidates[1].votes) + len(history.candidates[model_id].votes)
    assert html.count('<details class="vote">') == votes
    assert (
        '<td>finding:small</td><td>2</td><td>0.200</td><td>0.600</td><td>0.15</td><td><span class="failed">fails'
        in html
    )
    assert '<td>finding:large</td><td>2</td><td>0.700</td><td>0.600</td><td>0.15</td><td><span class="ok">ok' in html
    assert "not judged" in html
    assert EVIL not in html and escape(EVIL) in html  # the reason and the names are escaped
    assert "<td>—</td>" in html  # a score the candidate has not


def test_without_evidence_the_report_has_no_strata_section(
    targeted: tuple[LedgerHistory, BlobStore, int], tmp_path: Path
) -> None:
    history, _, _ = targeted
    assert "Votes by stratum" not in write_report(tmp_path, history, {}).read_text()
