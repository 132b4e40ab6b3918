"""Variant C on a real chain and vault: encrypted increments, a general checking containers, validators scoring
through the supervisor, a Byzantine member voted down, and the audit over it all."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from services.supervisor.app import create_app
from tclearn.audit.verify import audit
from tclearn.coalition import general as general_duty
from tclearn.coalition.blobs import put_record, vault_uri
from tclearn.coalition.build import Tables, hospital_folders
from tclearn.coalition.ckks import CkksBackend
from tclearn.coalition.context import Coalition
from tclearn.coalition.rounds import run_round
from tclearn.errors import DataError, NotFoundError
from tclearn.he.client import HttpSupervisorClient
from tclearn.he.encrypted import EncryptedModel, compact, encrypt_model, store_container
from tclearn.he.keys import generate
from tclearn.he.model import ModelSpec, init_weights
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData
from tclearn.learning.tables import class_metric, read_table
from tclearn.learning.tabular import synth_tabular
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.history import rebuild
from tclearn.records import CandidateMetadata, IntegrityReport, TrainingFacts, VoteEvidence
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.simulation.encrypted_demo import EncryptedRun
from tclearn.types import ModelRecord, ModelState, Variant
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tests.vault.conftest import serve_app

MEMBERS = 3


@pytest.fixture(scope="module")
def tabular_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tabular") / "data"
    synth_tabular(root, hospitals=MEMBERS, train=96, test=48, global_size=144, features=6, seed=0)
    return root


def make(
    data: Path, out: Path, byzantine: int = 0, attack: Attack = Attack.SIGN_FLIP
) -> tuple[Coalition, EncryptedRun]:
    settings = DemoSettings(members=MEMBERS, byzantine=byzantine, attack=attack, variant=Variant.C, data=data)
    co, run = setup(settings, embedded_chain(settings.accounts), out)
    assert isinstance(run, EncryptedRun)
    return co, run


def backend_of(co: Coalition) -> CkksBackend:
    assert isinstance(co.backend, CkksBackend)
    return co.backend


def test_poisoned_candidates_are_rejected_honest_ones_commit_and_the_audit_passes(
    tabular_data: Path, tmp_path: Path
) -> None:
    co, run = make(tabular_data, tmp_path, byzantine=1)
    rows = [run_round(co, h) for h in co.hospitals]  # hospital-3 is Byzantine (scaled sign flip on ciphertexts)
    assert [r.state for r in rows] == ["committed", "committed", "rejected"]
    # the scaled sign flip leaves the weight bounds: the general measures it (through the supervisor) and refuses
    # to open it, before any vote
    assert rows[2].byzantine and rows[2].rejections == 0 and rows[2].approvals == 0
    assert co.client.head() == 2
    # encrypted weights have no update size in clear: the general says it did not measure it, and why
    opened = next(e for e in co.client.events() if e.name == "CandidateOpened" and e.args["id"] == rows[0].id)
    update = IntegrityReport.parse(co.store.get(opened.args["reportHash"].hex())).checks[-1]
    assert update.name == "update" and update.ok and update.detail.startswith("not measured: variant C weights")

    history = rebuild(co.client.events())
    report = audit(history, co.store)
    assert report.ok, report.errors
    assert report.blobs_verified >= 3 * 3 + 1  # model, metadata and report per candidate, evidence

    # Members held only the public context; the supervisor's is the only secret one.
    backend = backend_of(co)
    assert not backend.context.can_decrypt and backend.context.hash == run.supervisor.context_hash
    assert set(backend.clients) == {h.address for h in co.hospitals}
    assert run.supervisor.he.can_decrypt

    # Every validator that voted had the supervisor score the candidate on each class of G and of its L (one
    # logged request in its name per class, nothing per sample); members asked only for refreshes, the general
    # for the weights' norms; nobody decrypted weights. At founding the supervisor decrypted only the sums of the
    # scaling round.
    log = [e for e in run.log() if e["action"] != "aggregate"]
    classes = {
        h.address.lower(): len(set(co.global_test.targets.tolist())) + len(set(h.local_test.targets.tolist()))
        for h in co.hospitals
        if isinstance(co.global_test, ImageData) and isinstance(h.local_test, ImageData)
    }
    for row in rows[:2]:
        model = co.client.get_model(row.id, with_uri=False).model_hash.hex()
        scorers = Counter(e["account"].lower() for e in log if e["action"] == "score" and e["model"] == model)
        voters = {v.validator.lower() for v in history.candidates[row.id].votes}
        assert voters and voters <= set(scorers) and all(scorers[v] == classes[v] for v in voters)
        for vote in history.candidates[row.id].votes:  # the accuracy within each class of G in the evidence
            shown = VoteEvidence.parse(co.store.get(vote.evidence_hash.hex())).strata
            assert [(s.set, s.name) for s in shown if s.set == "G"] == [("G", "class:0"), ("G", "class:1")]
    assert {e["account"] for e in log} == {h.address for h in co.hospitals}
    assert {e["action"] for e in log} == {"score", "refresh", "measure"}  # refreshes: training; the attacker's
    founding = [(e["account"], e["model"]) for e in run.log() if e["action"] == "aggregate"]
    assert sorted(founding) == [("founding", f"scaling:{r}") for r in ("bounds", "magnitudes", "moments")]

    # The final comparison: the supervisor itself decrypts the head, logged in its own name.
    table = run.score_table(co, rounds=2, trainers=1)
    assert set(table) == {"coalition", "centralized", "hospital-1", "hospital-2"}
    head_hash = co.client.get_model(2, with_uri=False).model_hash.hex()
    final = [(e["account"], e["model"]) for e in run.log() if e["action"] == "decrypt"]
    assert final == [(run.account.address, head_hash)]


def test_members_with_only_an_http_client_to_the_supervisor_service(tabular_data: Path, tmp_path: Path) -> None:
    """The same duties when each hospital reaches the supervisor over signed HTTP: nothing it holds can decrypt."""
    co, run = make(tabular_data, tmp_path, byzantine=1)
    directory = StaticDirectory({h.address: None for h in co.hospitals})
    with serve_app(lambda url: create_app(run.supervisor, directory, Audience.of(url))) as url:
        backend_of(co).clients = {h.address: HttpSupervisorClient(url, h.account.key) for h in co.hospitals}
        rows = [run_round(co, co.hospitals[0]), run_round(co, co.hospitals[2])]
        assert [(r.byzantine, r.state) for r in rows] == [(False, "committed"), (True, "rejected")]
        log = [e for e in HttpSupervisorClient(url, co.hospitals[1].account.key).log() if e["account"] != "founding"]
        assert {e["account"] for e in log} == {h.address for h in co.hospitals}
        assert {e["action"] for e in log} == {"score", "refresh", "measure"}
    assert audit(rebuild(co.client.events()), co.store).ok


def general_verdict(co: Coalition, model: EncryptedModel) -> tuple[ModelRecord, list[dict[str, object]]]:
    """Hospital 1 submits `model` with metadata declaring the coalition's shape and context; the general rules."""
    model_hash = store_container(co.store, model)
    head = co.client.get_model(co.client.head(), with_uri=False)
    metadata = CandidateMetadata(
        variant="C",
        mode="incremental",
        parent=head.model_hash.hex(),
        model=co.backend.describe(),
        training=TrainingFacts(96, 3, 96, "gd", 1.0, 0, "logistic", 3, 0.1, "ckks"),
        tclearn_version="test",
    )
    submitted = co.client.submit(
        co.hospitals[0].account,
        head.id,
        bytes.fromhex(model_hash),
        vault_uri(model_hash),
        bytes.fromhex(put_record(co, metadata)),
    )
    candidate = co.client.get_model(submitted.model_id)  # with its metadata hash (the Submitted event's)
    _, report_hash, _ = general_duty.open_candidate(co, co.hospital(candidate.general), candidate)
    failed = [c for c in json.loads(co.store.get(report_hash))["checks"] if not c["ok"]]
    return co.client.get_model(submitted.model_id, with_uri=False), failed


def test_a_candidate_encrypted_under_another_context_is_rejected_by_the_general(
    tabular_data: Path, tmp_path: Path
) -> None:
    co, run = make(tabular_data, tmp_path)
    spec = backend_of(co).spec
    other, _ = generate()  # another supervisor's keys, the same parameters
    record, failed = general_verdict(co, compact(other, encrypt_model(other, spec, init_weights(spec, 1))))
    assert record.state is ModelState.REJECTED
    assert [c["name"] for c in failed] == ["weights"]
    assert other.hash[:16] in str(failed[0]["detail"]) and "context" in str(failed[0]["detail"])
    assert {e["action"] for e in run.log()} == {"aggregate"}  # nothing about it reached the supervisor


def test_a_wrong_model_shape_is_rejected_and_random_ciphertexts_are_voted_down(
    tabular_data: Path, tmp_path: Path
) -> None:
    co, run = make(tabular_data, tmp_path, byzantine=1, attack=Attack.RANDOM_WEIGHTS)
    he, wide = run.supervisor.he, ModelSpec("logreg", backend_of(co).spec.features + 1)
    record, failed = general_verdict(co, compact(he, encrypt_model(he, wide, init_weights(wide))))
    assert record.state is ModelState.REJECTED and [c["name"] for c in failed] == ["weights"]
    assert "the coalition's is" in str(failed[0]["detail"])

    assert run_round(co, co.hospitals[0]).state == "committed"  # against the untrained genesis, noise may pass
    row = run_round(co, co.hospitals[2])  # random weights: a fresh encryption of noise under the right context
    assert row.byzantine and row.state == "rejected"


def test_tables_that_do_not_fit_are_named(tabular_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tabular_data, data)
    train = data / "hospital-2" / "train.csv"
    train.write_text("a,b,label\n0.1,0.2,1\n0.3,0.1,0\n")
    with pytest.raises(DataError, match=r"hospital-2/train\.csv' has other feature columns than G: missing 'f0'"):
        make(data, tmp_path / "out")
    train.write_text("f0,f1,f2,f3,f4,f5,label\n0,0,0,0,0,250,1\n0,0,n/a,0,0,0,0\n")
    with pytest.raises(DataError, match=r"train\.csv' line 3, column 'f2': 'n/a' is not a number"):
        make(data, tmp_path / "out")
    train.write_text("f0,f1,f2,f3,f4,f5,label\n0,0,0,0,0,250,1\n0,0,0,0,0,0,2\n0,0,0,0,0,1,0\n")
    with pytest.raises(DataError, match=r"holds 3 values \(0, 1, 2\)"):
        make(data, tmp_path / "out")
    assert not (tmp_path / "out" / "vault").exists()  # nothing written for a coalition that cannot run
    shutil.copy(tabular_data / "hospital-2" / "train.csv", train)
    for hospital in ("hospital-1", "hospital-2", "hospital-3"):  # a column no site ever varies
        path = data / hospital / "train.csv"
        header, *rows = path.read_text().splitlines()
        path.write_text("\n".join([header, *(",".join(["7", *r.split(",")[1:]]) for r in rows)]) + "\n")
    with pytest.raises(
        DataError,
        match=r"'f0' hold the same value in every row of every site's training table "
        r"\(.*hospital-1/train\.csv, .*hospital-3/train\.csv\)",
    ):
        make(data, tmp_path / "out2")
    with pytest.raises(DataError, match=r"global\.csv' has no label column 'outcome'"):
        setup(
            DemoSettings(members=MEMBERS, byzantine=0, variant=Variant.C, data=data, label_column="outcome"),
            embedded_chain(5),
            tmp_path / "out",
        )


def test_a_site_whose_local_set_holds_one_class_is_scored_by_specificity(tabular_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tabular_data, data)
    test = data / "hospital-2" / "test.csv"  # a screening centre: no positive case this month
    header, *rows = test.read_text().splitlines()
    test.write_text("\n".join([header, *(r for r in rows if r.endswith(",0"))]) + "\n")
    co, _ = make(data, tmp_path / "out")
    row = run_round(co, co.hospitals[0])
    assert row.state == "committed"
    evidence = [
        json.loads(co.store.get(v.evidence_hash.hex())) for v in rebuild(co.client.events()).candidates[row.id].votes
    ]
    metrics = {e["validator"]: (e["metric"], e["local_metric"]) for e in evidence}
    assert metrics[co.hospitals[1].address] == ("accuracy", "specificity")
    for hospital in co.hospitals[1:]:  # the voters; each names the metric its own L allows
        own = class_metric(read_table(data / hospital.name / "test.csv").y)
        assert metrics[hospital.address] == ("accuracy", own)


def test_a_data_folder_in_the_wrong_layout_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "st-luke").mkdir()
    (tmp_path / "st-luke" / "train.csv").write_text("f0,label\n1,0\n")
    (tmp_path / "st-mary").mkdir()
    with pytest.raises(NotFoundError, match=r"missing: .*global\.csv.*st-luke/test\.csv.*st-mary/train\.csv"):
        hospital_folders(tmp_path, 2, Tables())
