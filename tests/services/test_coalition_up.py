"""`tclearn coalition up` end to end, as separate processes on a real chain: the chain node, the vault, a member
API and a node daemon per hospital, the auditor; rounds driven through the member APIs; `coalition down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tclearn.errors import ConfigError
from tclearn.he.client import HttpSupervisorClient
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.history import rebuild
from tclearn.simulation.processes import RUN_FILE, down
from tclearn.simulation.up import UpSettings
from tclearn.types import ModelState, Variant
from tclearn.vault.audience import CoalitionId

ROOT = Path(__file__).resolve().parents[2]


def _up(out: Path, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tclearn.cli.app", "coalition", "up", "--out", str(out), "--detach", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # every process runs this checkout's tclearn and services
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def _pids(out: Path) -> list[int]:
    return [int(s["pid"]) for s in json.loads((out / RUN_FILE).read_text())["services"]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.anvil
def test_three_hospitals_on_anvil_commit_honest_work_and_reject_the_byzantine(tmp_path: Path) -> None:
    out = tmp_path / "coalition"
    summary = _up(out, "--members", "3", "--byzantine", "1", "--rounds", "3", "--epochs", "6", "--chain", "anvil")
    pids = _pids(out)
    try:
        rounds = summary["rounds"]
        assert isinstance(rounds, list) and [r["proposer"] for r in rounds] == [
            "hospital-1",
            "hospital-2",
            "hospital-3",
        ]
        assert [r["byzantine"] for r in rounds] == [False, False, True]
        assert [r["state"] for r in rounds] == ["committed", "committed", "rejected"]
        assert summary["poisoned_committed"] == 0 and summary["honest_rejected"] == 0
        # The chain agrees, read by a fresh client of its own.
        client = LedgerClient(connect(str(summary["chain"])), str(summary["contract"]))
        assert client.head() == rounds[1]["id"] == summary["head"]
        assert client.get_model(rounds[2]["id"]).state is ModelState.REJECTED
        # ... and so does the lineage read back through the auditor's API.
        token = str(summary["dashboard"]).split("#token=")[1]
        lineage = httpx.get(
            f"{summary['auditor']}/api/lineage", headers={"authorization": f"Bearer {token}"}, timeout=30
        ).json()
        assert httpx.get(f"{summary['auditor']}/api/lineage", timeout=30).status_code == 401
        assert lineage["head"] == summary["head"]
        assert lineage["committed"] == [0, rounds[0]["id"], rounds[1]["id"]]
        states = {m["id"]: m["state"] for m in lineage["models"]}
        assert states[rounds[2]["id"]] == "rejected"
        # Every member API answers for its hospital.
        for url in summary["members"].values():
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        stopped = down(out)
    assert len(stopped) == len(pids) and not any(_alive(pid) for pid in pids)
    assert not (out / RUN_FILE).exists()


@pytest.mark.anvil
def test_variant_c_runs_with_a_supervisor_service_and_validators_scoring_through_it(tmp_path: Path) -> None:
    out = tmp_path / "coalition"
    # Seed 1: each honest hospital's first increments are no worse on the others' local sets (with seed 0 the
    # synthetic covariate shift makes hospital-2 reject hospital-1's first increment, honest as it is).
    args = ("--variant", "C", "--members", "3", "--byzantine", "1", "--rounds", "3", "--seed", "1")
    summary = _up(out, *args, "--chain", "anvil")
    pids = _pids(out)
    try:
        rounds = summary["rounds"]
        assert isinstance(rounds, list)
        assert [(r["proposer"], r["byzantine"], r["state"]) for r in rounds] == [
            ("hospital-1", False, "committed"),
            ("hospital-2", False, "committed"),
            ("hospital-3", True, "rejected"),
        ]
        client = LedgerClient(connect(str(summary["chain"])), str(summary["contract"]))
        assert client.variant() is Variant.C and client.head() == rounds[1]["id"] == summary["head"]
        # The secret key lives only in the supervisor's folder, encrypted at rest; the sites hold none of it.
        secret = (out / "supervisor" / "ckks.key").read_bytes()
        assert secret.startswith(b"TCHEKEY2") and b'"kdf": "scrypt"' in secret  # the file records its KDF
        assert not [p for p in (out / "sites").rglob("*") if p.is_file() and p.read_bytes().startswith(b"TCHEKEY")]
        assert len(list((out / "sites").rglob("*.x25519.key"))) == 3  # the members' own keys, nothing more
        # Every validator that voted had the supervisor service score the candidate, signed as itself;
        # members only asked for refreshes and scores, generals for the weights' norms, nobody for a decryption.
        hospitals = dev_accounts(4)[1:]
        log = HttpSupervisorClient(
            str(summary["supervisor"]), hospitals[0].key, coalition=CoalitionId.of_client(client)
        ).log()
        founding = [e["model"] for e in log if e["account"] == "founding"]  # the scaling round, sums only
        assert sorted(founding) == ["scaling:bounds", "scaling:magnitudes", "scaling:moments"]
        log = [e for e in log if e["account"] != "founding"]
        assert {e["action"] for e in log} == {"score", "refresh", "measure"}
        assert {e["account"].lower() for e in log} <= {a.address.lower() for a in hospitals}
        history = rebuild(client.events())
        for row in rounds[:2]:  # the Byzantine sign flip leaves the weight bounds: its general refuses to open it
            model = client.get_model(row["id"], with_uri=False).model_hash.hex()
            scorers = Counter(e["account"].lower() for e in log if e["action"] == "score" and e["model"] == model)
            voters = {v.validator.lower() for v in history.candidates[row["id"]].votes}
            # G and L, each class of each apart (the scores by stratum): 4 score requests per validator
            assert voters and voters <= set(scorers) and set(scorers.values()) == {4}
        # The member API hands no model out in variant C, neither as a file nor through predictions.
        token = json.loads((out / RUN_FILE).read_text())["operator_token"]
        member, operator = summary["members"]["member-hospital-1"], {"Authorization": f"Bearer {token}"}
        blob = httpx.get(f"{member}/models/1/blob", headers=operator, timeout=30)
        assert blob.status_code == 409 and "variant C" in blob.text
        image = {"image": ("x.png", b"x")}
        predicted = httpx.post(f"{member}/models/1/predict", headers=operator, files=image, timeout=30)
        assert predicted.status_code == 409 and "supervisor's key" in predicted.json()["message"]
    finally:
        stopped = down(out)
    assert len(stopped) == len(pids) and not any(_alive(pid) for pid in pids)
    assert "supervisor" in stopped


@pytest.mark.ganache
def test_a_round_on_ganache(tmp_path: Path) -> None:
    out = tmp_path / "coalition"
    summary = _up(out, "--members", "3", "--byzantine", "0", "--rounds", "1", "--epochs", "1", "--chain", "ganache")
    try:
        rounds = summary["rounds"]
        assert isinstance(rounds, list) and rounds[0]["state"] == "committed" and summary["head"] == 1
    finally:
        down(out)


def test_up_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        UpSettings(chain="http://10.1.2.3:8545")
    with pytest.raises(ConfigError, match="at least 3"):
        UpSettings(members=2)
    with pytest.raises(ConfigError, match="no coalition started"):
        down(tmp_path)
    (tmp_path / RUN_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="not a run file"):
        down(tmp_path)
