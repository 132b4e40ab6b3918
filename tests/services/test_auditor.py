"""The auditor service over HTTP, against a real coalition run on Anvil and its file vault."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.auditor.app import app_from_env, create_app
from services.vault.app import create_app as create_vault
from tclearn.audit.config import AuditorSettings
from tclearn.audit.follow import ChainFollower
from tclearn.audit.token import new_token
from tclearn.config import load_settings
from tclearn.errors import AccessDenied, ConfigError, NotFoundError
from tclearn.ledger.governance import Admit
from tclearn.ledger.history import rebuild, to_json
from tclearn.ledger.localchain import LocalNode
from tclearn.state.db import Database
from tclearn.types import Role
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.http import HttpStore
from tclearn.vault.store import FsspecStore
from tests.conftest import ACCOUNTS, deploy_coalition, node_chain
from tests.governing import govern
from tests.services.coalition_run import Auditor, CoalitionRun
from tests.vault.conftest import account, serve_app

pytestmark = pytest.mark.anvil
TOKEN, TOKEN_SHA256 = new_token()
AUTH = {"authorization": f"Bearer {TOKEN}"}


def authorized(app: FastAPI) -> TestClient:
    """A client of the auditor `app` that sends the auditor token with every request."""
    return TestClient(app, headers=AUTH)


@pytest.fixture
def api(auditor_parts: Auditor) -> Iterator[TestClient]:
    app = create_app(auditor_parts.follower, auditor_parts.store, label="test coalition", token_sha256=TOKEN_SHA256)
    with authorized(app) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/lineage"),
        ("GET", "/api/models/0"),
        ("GET", "/api/integrity"),
        ("POST", "/api/integrity"),
        ("POST", "/api/integrity/0"),
        ("GET", "/api/access-log"),
        ("GET", "/api/scores"),
        ("GET", "/report.html"),
        ("GET", "/report.json"),
    ],
)
def test_every_api_route_needs_the_auditor_token(auditor_parts: Auditor, method: str, path: str) -> None:
    app = create_app(auditor_parts.follower, auditor_parts.store, token_sha256=TOKEN_SHA256)
    no_token = create_app(auditor_parts.follower, auditor_parts.store)
    with TestClient(app) as client, TestClient(no_token) as off:
        missing = client.request(method, path)
        wrong = client.request(method, path, headers={"authorization": "Bearer " + "x" * 43})
        basic = client.request(method, path, headers={"authorization": "Basic " + TOKEN})
        nobody = off.request(method, path, headers=AUTH)
        right = client.request(method, path, headers=AUTH)

    assert (missing.status_code, missing.json()["code"]) == (401, "auth_error")
    assert "Authorization: Bearer" in missing.json()["message"]
    assert (wrong.status_code, wrong.json()["message"]) == (401, "wrong auditor token")
    assert basic.status_code == 401 and "must be 'Bearer" in basic.json()["message"]
    assert nobody.status_code == 401 and "auditor access is off" in nobody.json()["message"]
    assert right.status_code in (200, 404)  # 404: this auditor has no access log


def test_health_and_the_dashboard_need_no_token(auditor_parts: Auditor) -> None:
    with TestClient(create_app(auditor_parts.follower, auditor_parts.store, token_sha256=TOKEN_SHA256)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200


def test_lineage_lists_every_model_with_its_state_and_the_committed_chain(
    api: TestClient, coalition_run: CoalitionRun
) -> None:
    response = api.get("/api/lineage")

    assert response.status_code == 200
    body = response.json()
    history = coalition_run.result.history
    assert body["head"] == history.head and body["lineage"] == history.lineage()
    assert body["committed"] == coalition_run.committed
    models = {m["id"]: m for m in body["models"]}
    assert set(models) == set(history.candidates)
    for c in history.candidates.values():
        m = models[c.id]
        assert (m["state"], m["parent_id"], m["proposer"], m["general"]) == (
            c.state.name.lower(),
            c.parent_id,
            c.proposer,
            c.general,
        )
        assert (m["approvals"], m["rejections"], m["model_hash"]) == (
            c.approvals,
            c.rejections,
            "0x" + c.model_hash.hex(),
        )
        assert m["uri"] == c.uri and "votes" not in m
    assert {m["name"] for m in body["members"]} >= set(coalition_run.result.summary["members"])


def test_a_model_shows_its_votes_scores_evidence_and_blob_checks(api: TestClient, coalition_run: CoalitionRun) -> None:
    model_id = coalition_run.committed[-1]
    candidate = coalition_run.result.history.candidates[model_id]

    body = api.get(f"/api/models/{model_id}").json()

    assert [(v["validator"], v["approve"], v["score_global"], v["evidence_hash"]) for v in body["votes"]] == [
        (v.validator, v.approve, v.score_global, "0x" + v.evidence_hash.hex()) for v in candidate.votes
    ]
    assert body["mean_score_global"] == pytest.approx(
        sum(v.score_global for v in candidate.votes) / len(candidate.votes)
    )
    assert {b["what"] for b in body["blobs"]} >= {"model blob", "metadata", "general's report"}
    assert all(b["status"] == "ok" for b in body["blobs"])
    assert body["names"][candidate.proposer] == coalition_run.result.history.name_of(candidate.proposer)
    for vote in body["votes"]:  # each vote's reason and strata, as its evidence in the vault holds them
        evidence = coalition_run.result.evidence[model_id][vote["validator"]]
        assert vote["reason"] == evidence.reason and evidence.approve
        assert [(s["set"], s["name"], s["samples"], s["candidate"], s["ok"]) for s in vote["strata"]] == [
            (s.set, s.name, s.samples, s.candidate, s.ok) for s in evidence.strata
        ]
        on_g = {s["name"]: s["samples"] for s in vote["strata"] if s["set"] == "G"}
        assert set(on_g) <= {"finding:none", "finding:small", "finding:medium", "finding:large"} and len(on_g) > 1
        assert sum(on_g.values()) == 48  # every image of G in one stratum
        assert {s["outcome"] for s in vote["strata"]} <= {"ok", "not judged"}


def test_scores_over_time_follow_the_votes_on_g(api: TestClient, coalition_run: CoalitionRun) -> None:
    points = api.get("/api/scores").json()

    voted = [c for c in coalition_run.result.history.candidates.values() if c.votes]
    assert [p["id"] for p in points] == sorted(c.id for c in voted)
    for p in points:
        scores = [v.score_global for v in coalition_run.result.history.candidates[p["id"]].votes]
        assert (p["min"], p["max"]) == (min(scores), max(scores))
        assert p["committed"] == (p["id"] in coalition_run.committed)
    assert [p["block"] for p in points] == sorted(p["block"] for p in points)


def test_a_tampered_blob_is_named_by_the_integrity_endpoint(api: TestClient, auditor_parts: Auditor) -> None:
    model_id = auditor_parts.run.committed[-1]
    assert api.get("/api/integrity").json()["ok"] is True
    model_hash = api.get(f"/api/models/{model_id}").json()["model_hash"]
    auditor_parts.blob_file(model_hash).write_bytes(b"not the model")

    stale = api.get("/api/integrity").json()  # the last check, until someone asks for a new one
    fresh = api.post(f"/api/integrity/{model_id}").json()

    assert stale["ok"] is True
    assert fresh["ok"] is False
    assert [(b["model_id"], b["what"], b["sha256"], b["status"], b["severity"]) for b in fresh["bad"]] == [
        (model_id, "model blob", model_hash, "tampered", "error")
    ]
    assert api.get("/api/integrity").json()["bad"] == fresh["bad"]
    report = api.get("/report.json").json()
    assert report["audit"]["ok"] is False and report["summary"]["audit_ok"] is False
    assert any(model_hash in f["what"] and f["severity"] == "error" for f in report["audit"]["findings"])


def test_a_missing_blob_is_reported_missing_after_reverifying_everything(
    api: TestClient, auditor_parts: Auditor
) -> None:
    metadata = api.get("/api/models/0").json()["metadata_hash"]
    if metadata == "0x" + "00" * 32:
        metadata = api.get(f"/api/models/{auditor_parts.run.committed[-1]}").json()["metadata_hash"]
    auditor_parts.blob_file(metadata).unlink()

    body = api.post("/api/integrity").json()

    assert {(b["sha256"], b["status"]) for b in body["bad"]} == {(metadata, "missing")}


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/models/999", 404, "no model 999 on the chain"),
        ("POST", "/api/integrity/999", 404, "no model 999 on the chain"),
        ("GET", "/api/models/-1", 404, "no model -1"),
        ("GET", "/api/models/abc", 422, "model_id"),
        ("GET", "/api/access-log", 404, "no access log"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(
    api: TestClient, method: str, path: str, status: int, message: str
) -> None:
    response = api.request(method, path)

    assert response.status_code == status
    assert message in response.text


def test_the_reports_export_the_audit(api: TestClient, coalition_run: CoalitionRun) -> None:
    html = api.get("/report.html")
    document = api.get("/report.json")

    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert f"head {coalition_run.result.history.head}" in html.text
    assert 'src="data:image/png;base64,' in html.text and 'Audit: <span class="ok">OK</span>' in html.text
    voted = [c for c in coalition_run.result.history.candidates.values() if c.votes]
    assert "<h2>Votes by stratum</h2>" in html.text and all(f"<h3>Model {c.id}</h3>" in html.text for c in voted)
    assert html.text.count('<details class="vote">') == sum(len(c.votes) for c in voted)
    body = document.json()
    assert "attachment" in document.headers["content-disposition"]
    assert body["audit"]["ok"] is True and body["audit"]["lineage"] == coalition_run.result.history.lineage()
    run = coalition_run
    assert body["history"] == to_json(rebuild(run.client.events(from_block=run.deployment.block)))
    assert body["summary"]["committed"] == len(coalition_run.committed)
    assert all(b["ok"] for b in body["integrity"])


def test_the_dashboard_and_its_scripts_are_served_without_outside_sources(api: TestClient) -> None:
    page = api.get("/")
    script = api.get("/static/app.js")

    assert page.status_code == 200 and '<svg id="lineage"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "drawLineage" in script.text
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text


def test_metrics_name_routes_by_template_and_docs_load_locally(api: TestClient, coalition_run: CoalitionRun) -> None:
    model_id = coalition_run.committed[0]
    assert api.get(f"/api/models/{model_id}").status_code == 200
    assert api.get("/static/app.js").status_code == 200
    docs = api.get("/docs")

    metrics = api.get("/metrics").text

    latency = "tclearn_http_request_duration_seconds_count"
    assert f'{latency}{{method="GET",route="/api/models/{{model_id}}",status="200"}} 1.0' in metrics
    assert f'{latency}{{method="GET",route="/static/{{path}}",status="200"}} 1.0' in metrics
    assert docs.status_code == 200 and "https://" not in docs.text
    assert api.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_the_follower_reads_new_events_incrementally_and_resumes_from_its_database(
    auditor_parts: Auditor, tmp_path: Path
) -> None:
    run, follower = auditor_parts.run, auditor_parts.follower
    before = follower.refresh()
    stored = len(follower.stored_events())
    newcomer = account(77)
    govern(run.client, run.result.client.chain.dev_keys, Admit(newcomer.address, Role.MEMBER, b"\x01" * 32, "late"))

    after = follower.refresh()

    assert newcomer.address not in before.members and after.members[newcomer.address].name == "late"
    every = run.client.events(from_block=run.deployment.block)
    assert stored < len(follower.stored_events()) == len(every)  # the new events read, none twice
    assert to_json(after) == to_json(rebuild(run.client.events(from_block=run.deployment.block)))
    resumed = ChainFollower(run.client, follower.db, start_block=run.deployment.block)
    assert resumed.reader.position == follower.reader.position  # nothing to re-read from the chain
    assert to_json(resumed.history) == to_json(after)


def test_the_access_log_is_read_from_the_vault_service_with_signed_requests(
    coalition_run: CoalitionRun, auditor_parts: Auditor, tmp_path: Path
) -> None:
    auditor_key, member = account(5), account(6)
    vault_db = Database(f"sqlite:///{tmp_path}/access.db")
    directory = StaticDirectory({member.address: None})  # the auditor is no member: listed as the vault's auditor

    def vault(url: str) -> FastAPI:
        return create_vault(auditor_parts.store, vault_db, directory, Audience.of(url), auditors=[auditor_key.address])

    with serve_app(vault) as url:
        store = HttpStore(url, auditor_key.key)
        with pytest.raises(AccessDenied, match="not an auditor of this vault"):
            HttpStore(url, member.key).access_log()
        app = create_app(auditor_parts.follower, store, access_log=store.access_log, token_sha256=TOKEN_SHA256)
        with authorized(app) as api:
            checked = api.get("/api/integrity").json()["checked"]
            log = api.get("/api/access-log").json()
            one_blob = log[0]["sha256"]
            filtered = api.get(f"/api/access-log?sha256={one_blob}").json()
        store.close()
    vault_db.dispose()

    assert checked > 0 and len(log) >= 1
    assert {(e["account"], e["action"]) for e in log} == {(auditor_key.address, "get")}
    assert {e["sha256"] for e in filtered} == {one_blob}


def test_app_from_env_reads_a_toml_file_with_environment_overrides(
    coalition_run: CoalitionRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f'deployment = "{coalition_run.deployment_file}"\nvault = "/nonexistent"\n'
        f'state = "sqlite:///{tmp_path}/state.db"\ntoken_sha256 = "{TOKEN_SHA256}"\n'
    )
    monkeypatch.setenv("TCLEARN_AUDITOR_CONFIG", str(config))
    monkeypatch.setenv("TCLEARN_AUDITOR_VAULT", str(coalition_run.vault))  # a plain folder is a file vault

    with authorized(app_from_env()) as api:
        health = api.get("/health").json()
        integrity = api.get("/api/integrity").json()

    assert health["chain_id"] == coalition_run.deployment.chain_id and health["head"] == coalition_run.result.head
    assert integrity["ok"] is True and integrity["checked"] > 0


@pytest.mark.parametrize(
    ("toml", "env", "error", "message"),
    [
        ('vault = "/v"\n', {}, ConfigError, "deployment: Field required"),
        ("deployment = \n", {}, ConfigError, "is not valid"),
        ('deployment = "d.json"\nvault = "/v"\nconfirmations = -1\n', {}, ConfigError, "confirmations"),
        ('deployment = "d.json"\nvault = "/v"\nbogus = 1\n', {}, ConfigError, "bogus"),
        (None, {"TCLEARN_AUDITOR_VAULT": "/v"}, ConfigError, "TCLEARN_AUDITOR_"),
    ],
)
def test_bad_settings_are_one_config_error_naming_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    toml: str | None,
    env: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    for name in [k for k in os.environ if k.startswith("TCLEARN_AUDITOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = None
    if toml is not None:
        path = tmp_path / "auditor.toml"
        path.write_text(toml)

    with pytest.raises(error, match=message):
        load_settings(AuditorSettings, path)


def test_a_missing_config_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.toml"):
        load_settings(AuditorSettings, tmp_path / "nope.toml")


def test_a_chain_that_stops_answering_is_a_502_naming_it(tmp_path: Path) -> None:
    with LocalNode("anvil", accounts=ACCOUNTS) as node:
        coalition = deploy_coalition(node_chain(node), validators=2)
        follower = ChainFollower(coalition.client, Database(f"sqlite:///{tmp_path}/state.db"))
        api = authorized(create_app(follower, FsspecStore(f"file://{tmp_path}/vault"), token_sha256=TOKEN_SHA256))
        assert api.get("/api/lineage").json()["models"][0]["state"] == "committed"
    response = api.get("/api/lineage")

    assert response.status_code == 502
    assert response.json()["code"] == "chain_unreachable" and node.url in response.json()["message"]
