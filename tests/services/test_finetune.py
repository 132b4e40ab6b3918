"""Local fine-tuning on a real Anvil deployment with a live vault and a committed head: through the member API
(`POST /jobs/finetune`) and the CLI (`tclearn member finetune`). The run leaves the chain and the vault as they
were; its model file loads, predicts, and scores on L what its record says."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tclearn.learning.evaluate import evaluate
from tclearn.learning.modelfile import load_model
from tclearn.learning.train import TrainConfig
from tclearn.site.finetune import MODEL_FILE, RECORD_SCHEMA
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.vault.signing import sign_request
from tests.services.conftest import Coalition3, member_client, operator_headers, wait_job
from tests.test_cli import invoke

OPERATOR = operator_headers()


def vault_files(coalition: Coalition3) -> dict[str, int]:
    """Every blob file of the vault with its size."""
    root = coalition.deployed.folder / "vault"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def chain_state(coalition: Coalition3) -> tuple[int, int]:
    client = coalition.deployed.client
    return client.head(), client.model_count()


def site_with(site: Site, folder: Path, training: TrainConfig | None = None) -> Site:
    """`site` writing its fine-tuned models to `folder` (and training with `training`, if given)."""
    coalition = site.coalition if training is None else site.coalition.trained_with(training)
    return Site(site.config.model_copy(update={"finetuned": folder}), coalition, site.hospital)


def check_run(folder: Path, record: dict[str, object], site: Site) -> None:
    """The run's folder holds a model that loads, scores on L what the record says, and nothing half-written."""
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.meta.json", MODEL_FILE]
    assert json.loads((folder / "model.meta.json").read_text()) == {k: v for k, v in record.items() if k != "folder"}
    network, config = load_model(folder / MODEL_FILE)
    assert config.to_dict() == record["model"]
    scores = record["local_test"]
    assert isinstance(scores, dict) and scores["metric"] == "dice"
    assert scores["samples"] == len(site.hospital.local_test)
    assert evaluate(network, site.hospital.local_test).score == pytest.approx(scores["after"], abs=1e-6)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.fixture
def api(coalition_a: Coalition3, tmp_path: Path) -> Iterator[TestClient]:
    site = site_with(coalition_a.sites[0], tmp_path / "finetuned")
    with member_client(site, db=Database(f"sqlite:///{tmp_path}/jobs.db"), history_ttl=0.0) as client:
        yield client


def test_a_finetune_job_writes_a_local_model_and_touches_neither_chain_nor_vault(
    api: TestClient, coalition_a: Coalition3, tmp_path: Path
) -> None:
    chain, vault = chain_state(coalition_a), vault_files(coalition_a)
    head_hash = coalition_a.deployed.client.get_model(chain[0]).model_hash.hex()
    started = api.post("/jobs/finetune", headers=OPERATOR, json={"epochs": 2})
    assert started.status_code == 202, started.text
    assert started.json()["kind"] == "finetune" and started.json()["owner"] == "operator"
    job = wait_job(api, started.json()["id"])
    assert job["state"] == "done", job["error"]
    assert job["progress"] == 1.0 and job["model_id"] is None and job["timings"]["training"] > 0
    record = job["result"]
    assert record["schema"] == RECORD_SCHEMA and record["site"] == "hospital-1" and record["variant"] == "A"
    assert record["head_id"] == chain[0] and record["head_hash"] == head_hash
    scores = record["local_test"]
    for score in (scores["before"], scores["after"]):  # both measured; after >= before is not a given
        assert isinstance(score, float) and 0.0 <= score <= 1.0
    assert scores["metrics_before"]["dice"] == scores["before"] and "iou" in scores["metrics_after"]
    training = record["training"]
    assert training["epochs"] == 2 and training["samples"] == len(coalition_a.sites[0].hospital.train)
    assert training["steps"] == 2 * (training["samples"] // training["batch_size"])
    folder = Path(record["folder"])
    assert folder.parent == tmp_path / "finetuned" and f"-head{chain[0]}-" in folder.name
    check_run(folder, record, coalition_a.sites[0])
    assert chain_state(coalition_a) == chain and vault_files(coalition_a) == vault  # never submitted nor stored
    assert api.get("/jobs", headers=OPERATOR).json()[0]["result"] == record


def test_finetune_is_the_operators_and_bad_options_are_named(
    api: TestClient, coalition_a: Coalition3, tmp_path: Path
) -> None:
    peer = sign_request(coalition_a.deployed.accounts[1], api.app.state.audience, "POST", "/jobs/finetune")  # type: ignore[attr-defined]
    refused = api.post("/jobs/finetune", headers=peer)
    assert refused.status_code == 403 and "its operator starts it" in refused.json()["message"]
    assert api.post("/jobs/finetune", json={}).status_code == 401
    zero = api.post("/jobs/finetune", headers=OPERATOR, json={"epochs": 0})
    assert zero.status_code == 422 and zero.json()["code"] == "invalid_request"
    unknown = api.post("/jobs/finetune", headers=OPERATOR, json={"epoch": 2})
    assert unknown.status_code == 422
    small = api.post("/jobs/finetune", headers=OPERATOR, json={"batch_size": 2})
    assert small.status_code == 400 and "below the coalition's minimum batch size 4" in small.json()["message"]
    large = api.post("/jobs/finetune", headers=OPERATOR, json={"batch_size": 64})
    assert large.status_code == 400 and "fewer than one batch of 64" in large.json()["message"]
    assert api.get("/jobs", headers=OPERATOR).json() == []  # nothing was queued
    assert not (tmp_path / "finetuned").exists() or not any((tmp_path / "finetuned").iterdir())


def test_a_cancelled_finetune_job_writes_nothing(coalition_a: Coalition3, tmp_path: Path) -> None:
    folder = tmp_path / "finetuned"
    slow = site_with(coalition_a.sites[0], folder, TrainConfig(epochs=2000, batch_size=4, min_batch_size=4))
    with member_client(slow, db=Database(f"sqlite:///{tmp_path}/jobs.db")) as api:
        job = api.post("/jobs/finetune", headers=OPERATOR).json()
        deadline = time.monotonic() + 60
        while (seen := api.get(f"/jobs/{job['id']}", headers=OPERATOR).json())["phase"] != "training":
            assert time.monotonic() < deadline and seen["state"] in ("queued", "running"), seen
            time.sleep(0.05)
        busy = api.post("/jobs/train", headers=OPERATOR)
        assert busy.status_code == 409 and "one job runs at a time" in busy.json()["message"]
        assert api.post(f"/jobs/{job['id']}/cancel", headers=OPERATOR).status_code == 200
        ended = wait_job(api, job["id"], timeout=30)
    assert ended["state"] == "cancelled" and ended["result"] is None and 0.1 <= ended["progress"] < 0.9
    assert list(folder.iterdir()) == []  # checked writable before training, nothing left after the cancel


def test_member_finetune_cli_writes_a_model_tclearn_predict_reads(coalition_a: Coalition3, tmp_path: Path) -> None:
    chain, vault = chain_state(coalition_a), vault_files(coalition_a)
    config = coalition_a.deployed.configs[0]
    env = {"TCLEARN_MEMBER_FINETUNED": str(tmp_path / "mine")}
    shown = invoke("member", "finetune", "--config", str(config), "--epochs", "1", "--json", env=env)
    record = json.loads(shown.output)  # type: ignore[attr-defined]
    folder = Path(record["folder"])
    assert folder.parent == tmp_path / "mine" and record["training"]["epochs"] == 1
    check_run(folder, record, coalition_a.sites[0])
    assert chain_state(coalition_a) == chain and vault_files(coalition_a) == vault
    out = tmp_path / "predicted"
    images = coalition_a.deployed.folder / "data" / "global"
    invoke("predict", "--model", str(folder / MODEL_FILE), "--input", str(images), "--out", str(out))
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions["images"]) == len(list((images / "images").iterdir()))
    text = invoke("member", "finetune", "--config", str(config), "--epochs", "1", env=env).output  # type: ignore[attr-defined]
    assert f"fine-tuned model {chain[0]} on hospital-1's data" in text and "L dice " in text and "model: " in text
