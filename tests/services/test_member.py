"""The member API over HTTP against a real Anvil deployment, a live vault and a committed model."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from PIL import Image

from tclearn.coalition.rounds import settle
from tclearn.learning.train import TrainConfig
from tclearn.ledger.localchain import free_port
from tclearn.site.jobs import JobRunner, JobState, TrainJobRow
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.types import ModelState
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.codec import architecture_of, decode_model
from tclearn.vault.signing import ADDRESS_HEADER, sign_request
from tests.services.conftest import OPERATOR_TOKEN, Coalition3, member_client, operator_headers, wait_job

OPERATOR = operator_headers()


def signed(
    to: TestClient, account: LocalAccount, method: str, path: str, body: bytes = b"", **kw: float
) -> dict[str, str]:
    """Headers of `account`'s request to the member API `to` (signed for its audience)."""
    audience = to.app.state.audience  # type: ignore[attr-defined]
    return sign_request(account, audience, method, path, hashlib.sha256(body).hexdigest(), **kw)


@pytest.fixture(scope="module")
def api(coalition_a: Coalition3) -> Iterator[TestClient]:
    with member_client(coalition_a.sites[0], history_ttl=0.0) as client:
        yield client


def png_of(folder: Path) -> bytes:
    return next(iter(sorted((folder / "images").iterdir()))).read_bytes()


def test_health_needs_no_auth_and_coalition_describes_the_deployment(api: TestClient, coalition_a: Coalition3) -> None:
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["site"] == "hospital-1"
    info = api.get("/coalition", headers=OPERATOR).json()
    client = coalition_a.deployed.client
    assert info["chain_id"] == 31337 and info["contract"] == client.address and info["variant"] == "A"
    assert info["head"] == client.head() == coalition_a.committed
    assert info["site"] == {"name": "hospital-1", "address": coalition_a.deployed.accounts[0].address}
    assert info["active_members"] == 3


def test_requests_are_tagged_and_counted_by_route_template(api: TestClient, coalition_a: Coalition3) -> None:
    tagged = api.get(f"/models/{coalition_a.committed}", headers={**OPERATOR, "x-request-id": "member-trace-1"})
    refused = api.get(f"/models/{coalition_a.committed}")  # no credentials: 401

    metrics = api.get("/metrics").text

    assert tagged.headers["x-request-id"] == "member-trace-1" and refused.status_code == 401
    latency = "tclearn_http_request_duration_seconds_count"
    assert f'{latency}{{method="GET",route="/models/{{model_id}}",status="200"}}' in metrics
    assert f'{latency}{{method="GET",route="/models/{{model_id}}",status="401"}}' in metrics
    assert f"/models/{coalition_a.committed}" not in metrics


def test_models_list_and_one_model_with_votes(api: TestClient, coalition_a: Coalition3) -> None:
    models = api.get("/models", headers=OPERATOR).json()
    by_id = {m["id"]: m for m in models}
    committed = by_id[coalition_a.committed]
    record = coalition_a.deployed.client.get_model(coalition_a.committed)
    assert committed["state"] == "committed" and committed["head"] and committed["proposer_name"] == "hospital-1"
    assert committed["model_hash"] == record.model_hash.hex() and committed["parent_id"] == 0
    assert by_id[0]["head"] is False
    detail = api.get(f"/models/{coalition_a.committed}", headers=OPERATOR).json()
    assert {v["validator_name"] for v in detail["votes"]} == {"hospital-2", "hospital-3"}
    assert all(v["approve"] and 0 <= v["score_global"] <= 1 for v in detail["votes"])
    assert detail["report_hash"] and detail["generals"][0] == record.general
    missing = api.get("/models/999", headers=OPERATOR)
    assert missing.status_code == 404 and "no model 999" in missing.json()["message"]


def test_variant_a_download_is_the_blob_for_operator_and_peers(api: TestClient, coalition_a: Coalition3) -> None:
    model_id, peer = coalition_a.committed, coalition_a.deployed.accounts[1]
    path = f"/models/{model_id}/blob"
    for headers in (OPERATOR, signed(api, peer, "GET", path)):
        response = api.get(path, headers=headers)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == response.headers["x-tclearn-model-hash"]
        assert (
            response.headers["x-tclearn-model-hash"]
            == api.get(f"/models/{model_id}", headers=OPERATOR).json()["model_hash"]
        )
    genesis = coalition_a.deployed.genesis
    weights = decode_model(response.content, architecture_of(genesis))
    assert set(weights) == set(genesis) and any(not torch.equal(weights[k], genesis[k]) for k in genesis)


def test_predict_returns_boxes_and_an_overlay(api: TestClient, coalition_a: Coalition3) -> None:
    image = png_of(coalition_a.deployed.folder / "data" / "global")
    path = f"/models/{coalition_a.committed}/predict"
    result = api.post(path, headers=OPERATOR, files={"image": ("scan.png", image, "image/png")})
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["image"] == "scan.png" and body["shape"] == [1, 32, 32] and body["threshold"] == 0.5
    assert all(0 <= b["min_row"] < b["max_row"] <= 32 and 0 < b["probability"] <= 1 for b in body["boxes"])
    picture = api.post(path + "?format=png&threshold=0.3", headers=OPERATOR, files={"image": ("scan.png", image)})
    assert picture.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(picture.content)).size[1] == 256  # 32 px scaled up for people
    peer = coalition_a.deployed.accounts[2]
    upload = httpx.Request("POST", "http://x" + path, files={"image": ("scan.png", image)})
    body_bytes = upload.read()
    headers = {**dict(upload.headers), **signed(api, peer, "POST", path, body_bytes)}
    by_peer = api.post(path, content=body_bytes, headers=headers)
    assert by_peer.status_code == 200 and by_peer.json()["boxes"] == body["boxes"]


@pytest.mark.parametrize(
    ("files", "query", "status", "message"),
    [
        ({"image": ("scan.png", b"not a png", "image/png")}, "", 400, "cannot read image 'scan.png'"),
        ({"image": ("scan.gif", b"GIF89a", "image/gif")}, "", 400, "unsupported image type 'scan.gif'"),
        ({"image": ("scan.png", b"", "image/png")}, "", 400, "is empty"),
        ({"picture": ("scan.png", b"x", "image/png")}, "", 400, "field 'image'"),
        ({"image": ("rgb.png", "RGB", "image/png")}, "", 400, "expects 1 channel"),
        ({"image": ("scan.png", b"x", "image/png")}, "?threshold=1.5", 422, "threshold"),
        ({"image": ("scan.png", b"x", "image/png")}, "?format=gif", 422, "format"),
    ],
)
def test_bad_predictions_are_4xx_naming_the_problem(
    api: TestClient, coalition_a: Coalition3, files: dict, query: str, status: int, message: str
) -> None:
    if files.get("image", (None, None))[1] == "RGB":
        picture = io.BytesIO()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(picture, format="PNG")
        files = {"image": ("rgb.png", picture.getvalue(), "image/png")}
    response = api.post(f"/models/{coalition_a.committed}/predict{query}", headers=OPERATOR, files=files)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


def test_auth_matrix(api: TestClient, coalition_a: Coalition3) -> None:
    member, other, outsider = *coalition_a.deployed.accounts[1:3], coalition_a.deployed.outsider
    path = "/models"

    def status(headers: dict[str, str]) -> tuple[int, str]:
        response = api.get(path, headers=headers)
        return response.status_code, response.json()["message"] if response.status_code >= 400 else ""

    good = signed(api, member, "GET", path)
    assert status(good)[0] == 200
    replayed = f"replayed request: nonce {good['x-tclearn-nonce']} was already used by {member.address}"
    assert status(good) == (401, replayed)
    unsigned = status({})
    assert unsigned[0] == 401 and "unsigned request" in unsigned[1]
    wrong_signer = {**signed(api, other, "GET", path), ADDRESS_HEADER: member.address}
    assert status(wrong_signer)[0] == 401 and "signature does not match" in status(wrong_signer)[1]
    non_member = f"{outsider.address} is not an active member of the coalition"
    assert status(signed(api, outsider, "GET", path)) == (403, non_member)
    expired = status(signed(api, member, "GET", path, now=time.time() - 3600))
    assert expired[0] == 401 and "stale request" in expired[1]
    other_path = status(signed(api, member, "GET", "/coalition"))
    assert other_path[0] == 401 and "signature does not match" in other_path[1]
    assert status(operator_headers("wrong-token-0123456789")) == (401, "wrong operator token")
    assert status({"authorization": "Basic abc"})[0] == 401
    assert status(operator_headers(OPERATOR_TOKEN))[0] == 200


def test_a_peer_request_replayed_to_another_member_api_is_refused(coalition_a: Coalition3) -> None:
    """Hospital-3 signs a request for hospital-1's API (X); X replays it to hospital-2's (Y), which refuses it
    as signed for another audience; X itself refuses a second copy as a replay."""
    peer, ours = coalition_a.deployed.accounts[2], CoalitionId.of_client(coalition_a.deployed.client)
    x_audience = Audience.of("http://hospital-1.test:8900", ours)
    y_audience = Audience.of("http://hospital-2.test:8900", ours)
    x_site, y_site = coalition_a.sites[:2]
    with member_client(x_site, audience=x_audience) as x, member_client(y_site, audience=y_audience) as y:
        headers = sign_request(peer, x_audience, "GET", "/coalition")
        at_x = x.get("/coalition", headers=headers)
        at_y = y.get("/coalition", headers=headers)
        again_at_x = x.get("/coalition", headers=headers)
        own_at_y = y.get("/coalition", headers=sign_request(peer, y_audience, "GET", "/coalition"))

    assert at_x.status_code == 200 and at_x.json()["site"]["name"] == "hospital-1"
    assert at_y.status_code == 401 and at_y.json()["code"] == "auth_error"
    assert (
        at_y.json()["message"]
        == f"audience mismatch: the request was signed for {x_audience}, this service is {y_audience}"
    )
    assert again_at_x.status_code == 401 and "replayed request" in again_at_x.json()["message"]
    assert own_at_y.status_code == 200 and own_at_y.json()["site"]["name"] == "hospital-2"


def test_a_train_job_submits_a_candidate_that_commits(api: TestClient, coalition_a: Coalition3) -> None:
    client = coalition_a.deployed.client
    before = client.model_count()
    started = api.post("/jobs/train", headers=OPERATOR)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["owner"] == "operator" and job["state"] in ("queued", "running")
    busy = api.post("/jobs/train", headers=OPERATOR)
    assert busy.status_code == 409 and "one job runs at a time" in busy.json()["message"]
    done = wait_job(api, job["id"])
    assert done["state"] == "done", done["error"]
    assert done["progress"] == 1.0 and done["timings"]["training"] > 0 and done["timings"]["ledger"] > 0
    record = client.get_model(done["model_id"])
    assert client.model_count() == before + 1 and record.model_hash.hex() == done["model_hash"]
    assert record.proposer == coalition_a.deployed.accounts[0].address and record.state is ModelState.SUBMITTED
    predicting = api.post(f"/models/{done['model_id']}/predict", headers=OPERATOR, files={"image": ("a.png", b"x")})
    assert predicting.status_code == 409 and "committed models only" in predicting.json()["message"]
    assert settle(coalition_a.contexts, done["model_id"]) is ModelState.COMMITTED
    shown = api.get(f"/models/{done['model_id']}", headers=OPERATOR).json()
    assert shown["state"] == "committed" and shown["head"] and len(shown["votes"]) == 2
    assert api.get("/jobs", headers=OPERATOR).json()[0]["id"] == job["id"]


@pytest.fixture
def slow_api(coalition_a: Coalition3, tmp_path: Path) -> Iterator[TestClient]:
    """Hospital-1's API with a training run long enough to cancel (its own job database)."""
    site = coalition_a.sites[0]
    long_training = TrainConfig(epochs=2000, batch_size=4, min_batch_size=4)
    slow = Site(site.config, site.coalition.trained_with(long_training), site.hospital)
    with member_client(slow, db=Database(f"sqlite:///{tmp_path}/jobs.db")) as client:
        yield client


def test_jobs_are_private_and_a_cancelled_job_stops(slow_api: TestClient, coalition_a: Coalition3) -> None:
    owner, other = coalition_a.deployed.accounts[1:3]
    before = coalition_a.deployed.client.model_count()
    started = slow_api.post("/jobs/train", headers=signed(slow_api, owner, "POST", "/jobs/train"))
    assert started.status_code == 202
    job = started.json()
    assert job["owner"] == owner.address
    path, cancel = f"/jobs/{job['id']}", f"/jobs/{job['id']}/cancel"
    deadline = time.monotonic() + 60
    while (seen := slow_api.get(path, headers=signed(slow_api, owner, "GET", path)).json())["phase"] != "training":
        assert time.monotonic() < deadline and seen["state"] in ("queued", "running"), seen
        time.sleep(0.05)
    for headers in (signed(slow_api, other, "GET", path), OPERATOR):
        hidden = slow_api.get(path, headers=headers)
        assert hidden.status_code == 404 and "no job" in hidden.json()["message"]
    for headers in (signed(slow_api, other, "POST", cancel), OPERATOR):
        assert slow_api.post(cancel, headers=headers).status_code == 404
    assert slow_api.get("/jobs", headers=OPERATOR).json() == []
    assert slow_api.post(cancel, headers=signed(slow_api, owner, "POST", cancel)).status_code == 200
    deadline = time.monotonic() + 30
    while (ended := slow_api.get(path, headers=signed(slow_api, owner, "GET", path)).json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ended["state"] == "cancelled" and ended["progress"] < 0.9 and "cancelled" in ended["error"]
    assert coalition_a.deployed.client.model_count() == before  # nothing was submitted
    again = slow_api.post(cancel, headers=signed(slow_api, owner, "POST", cancel))
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["message"]


def test_jobs_interrupted_by_a_restart_are_marked_failed(coalition_a: Coalition3, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/jobs.db")
    with db.session() as s:
        s.add(
            TrainJobRow(id="a" * 32, owner="operator", state="running", phase="training", progress=0.4, created_at=1.0)
        )
    runner = JobRunner(coalition_a.sites[0], db)
    job = runner.get("operator", "a" * 32)
    assert job.state is JobState.FAILED and "interrupted" in (job.error or "")


def test_member_serve_cli(coalition_a: Coalition3) -> None:
    """`tclearn member serve` opens the site from its member.toml and answers on the port given."""
    port = free_port()
    config = coalition_a.deployed.configs[0]
    env = {**os.environ, "TCLEARN_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONPATH": str(Path.cwd())}
    process = subprocess.Popen(
        [sys.executable, "-m", "tclearn.cli.app", "member", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/coalition", headers=OPERATOR, timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()  # type: ignore[union-attr]
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["site"]["name"] == "hospital-1"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_member_serve_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "member.toml"
    bad.write_text('name = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "tclearn.cli.app", "member", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "member.toml" in result.stderr and "Traceback" not in result.stderr
