"""Exports on a real Anvil deployment with a live vault: through the member API (`POST /exports`, `GET /exports`,
`GET /exports/{id}/model`) and the CLI (`tclearn export`, `tclearn trace`). The file a site writes carries its
hospital's fingerprint, the record is on chain, and a trace by another hospital names the exporter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load

from tclearn.cli.app import app
from tclearn.coalition.trace import trace
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.vault.keys import load_key
from tclearn.vault.signing import sign_request
from tests.services.conftest import KEY_PASSWORD, Coalition3, member_client, operator_headers
from tests.test_cli import invoke, runner

OPERATOR = operator_headers()


@pytest.fixture
def api(coalition_a: Coalition3, tmp_path: Path) -> Iterator[TestClient]:
    first = coalition_a.sites[0]
    site = Site(first.config.model_copy(update={"exports": tmp_path / "exports"}), first.coalition, first.hospital)
    with member_client(site, db=Database(f"sqlite:///{tmp_path}/jobs.db"), history_ttl=0.0) as client:
        yield client


def accused(coalition: Coalition3, index: int, weights: dict[str, object]) -> list[str]:
    """Whom hospital `index` accuses of `weights`, with its registered X25519 key (the sites of a variant A
    coalition are opened without one)."""
    site, folder = coalition.sites[index], coalition.deployed.folder
    key = load_key(folder / "keys" / f"hospital-{index + 1}.key", KEY_PASSWORD.encode())
    found = trace(site.client, site.coalition.store, site.hospital.address, key, weights)  # type: ignore[arg-type]
    return [r.export.member for r in found.accused]


def test_an_export_through_the_member_api_is_on_chain_and_traced_to_its_hospital(
    api: TestClient, coalition_a: Coalition3, tmp_path: Path
) -> None:
    before = len(coalition_a.deployed.client.exports())
    made = api.post("/exports", headers=OPERATOR, json={"model_id": coalition_a.committed})
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["model_id"] == coalition_a.committed and body["file"] is True
    assert body["member"] == coalition_a.sites[0].hospital.address
    assert [s["data"] for s in body["scores"]] == ["L", "G"]
    on_chain = coalition_a.deployed.client.exports()
    assert len(on_chain) == before + 1 and on_chain[-1].id == body["export_id"]
    assert on_chain[-1].fingerprint.hex() == body["fingerprint"]
    listed = api.get("/exports", headers=OPERATOR).json()
    assert [e["export_id"] for e in listed][-1] == body["export_id"] and listed[-1]["scores"] == body["scores"]
    got = api.get(f"/exports/{body['export_id']}/model", headers=OPERATOR)
    assert got.status_code == 200
    assert got.content == (tmp_path / "exports" / f"export-{body['export_id']}.safetensors").read_bytes()
    assert accused(coalition_a, 1, load(got.content)) == [coalition_a.sites[0].hospital.address]


def test_export_routes_refuse_what_they_must(api: TestClient, coalition_a: Coalition3) -> None:
    unknown = api.post("/exports", headers=OPERATOR, json={"model_id": 99})
    assert unknown.status_code == 404 and "no model 99 on chain" in unknown.json()["message"]
    assert api.post("/exports", headers=OPERATOR, json={"model": 1}).status_code == 422
    audience = api.app.state.audience  # type: ignore[attr-defined]
    body = json.dumps({"model_id": coalition_a.committed}).encode()
    peer = sign_request(
        coalition_a.deployed.accounts[1], audience, "POST", "/exports", hashlib.sha256(body).hexdigest()
    )
    refused = api.post("/exports", headers={**peer, "content-type": "application/json"}, content=body)
    assert refused.status_code == 403 and "its operator asks for it" in refused.json()["message"]
    assert api.get("/exports/12345/model", headers=OPERATOR).status_code == 404
    assert api.get("/exports").status_code == 401


def test_export_and_trace_from_the_command_line(coalition_a: Coalition3, tmp_path: Path) -> None:
    configs, folder = coalition_a.deployed.configs, coalition_a.deployed.folder
    out = tmp_path / "taken" / "model.safetensors"
    shown = invoke("export", str(coalition_a.committed), "--out", str(out), "--config", str(configs[2]), "--json")
    record = json.loads(shown.output)  # type: ignore[attr-defined]
    assert record["model_id"] == coalition_a.committed and record["member"] == coalition_a.deployed.accounts[2].address
    assert record["model"]["arch"] == "unet" and record["chain_id"] == coalition_a.deployed.client.chain.chain_id
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.safetensors", "model.safetensors.json"]
    env = {
        "TCLEARN_MEMBER_ENCRYPTION_KEY": str(folder / "keys" / "hospital-1.key"),
        "TCLEARN_KEY_PASSWORD": KEY_PASSWORD,
    }
    traced = json.loads(invoke("trace", str(out), "--config", str(configs[0]), "--json", env=env).output)  # type: ignore[attr-defined]
    assert [a["member"] for a in traced["accused"]] == [record["member"]]
    assert traced["false_accusation_bound"] <= 1e-6
    text = invoke("trace", str(out), "--config", str(configs[0]), env=env).output  # type: ignore[attr-defined]
    assert f"accused: hospital-3 ({record['member']}), export {record['export_id']}" in text
    deployed = coalition_a.deployed
    as_account = [
        *("--vault", deployed.vault_url, "-d", str(folder / "deployment.json"), "--dev-account", "2"),
        *("--key", str(folder / "keys" / "hospital-2.key"), "--json"),
    ]
    traced = json.loads(invoke("trace", str(out), *as_account, env=env).output)  # type: ignore[attr-defined]
    assert [a["member"] for a in traced["accused"]] == [record["member"]] and traced["watermark"] is None
    shown = invoke("ledger", "show", "-d", str(folder / "deployment.json"), env={"COLUMNS": "250"}).output  # type: ignore[attr-defined]
    exports_table = shown.split("Exports (")[1]  # the table after the members' and the models'
    row = next(line for line in exports_table.splitlines() if line.startswith(f"│ {record['export_id']} "))
    assert f"0x{record['fingerprint'][:12]}…" in row and str(record["model_id"]) in row and "hospital-3" in row
    unknown = runner.invoke(app, ["export", "99", "--out", str(tmp_path / "no.safetensors"), "-c", str(configs[2])])
    assert unknown.exit_code == 1 and "no model 99 on chain" in unknown.output
    assert not (tmp_path / "no.safetensors").exists() and not (tmp_path / "no.safetensors.json").exists()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(out.read_bytes()[:100])
    failed = runner.invoke(app, ["trace", str(corrupt), "-c", str(configs[0])])
    assert failed.exit_code == 1 and failed.output.startswith("error: cannot read model file")
