"""`tclearn coalition up` end to end, as separate processes on a real chain: the chain node, the vault, a member
API and a node daemon per hospital, the auditor; rounds driven through the member APIs; `coalition down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tclearn.coalition.up import RUN_FILE, UpSettings, down
from tclearn.errors import ConfigError
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.types import ModelState


def _up(out: Path, *args: str) -> dict[str, object]:
    command = [sys.executable, "-m", "tclearn.cli.app", "coalition", "up", "--out", str(out), "--detach", "--json"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    summary: dict[str, object] = json.loads(done.stdout)
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
    summary = _up(out, "--members", "3", "--byzantine", "1", "--rounds", "3", "--epochs", "1", "--chain", "anvil")
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
        assert client.head() == rounds[1]["model_id"] == summary["head"]
        assert client.get_model(rounds[2]["model_id"]).state is ModelState.REJECTED
        # ... and so does the lineage read back through the auditor's API.
        lineage = httpx.get(f"{summary['dashboard']}api/lineage", timeout=30).json()
        assert lineage["head"] == summary["head"]
        assert lineage["committed"] == [0, rounds[0]["model_id"], rounds[1]["model_id"]]
        states = {m["id"]: m["state"] for m in lineage["models"]}
        assert states[rounds[2]["model_id"]] == "rejected"
        # Every member API answers for its hospital.
        for url in summary["members"].values():  # type: ignore[union-attr]
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        stopped = down(out)
    assert len(stopped) == len(pids) and not any(_alive(pid) for pid in pids)
    assert not (out / RUN_FILE).exists()


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
    with pytest.raises(ConfigError, match="variant C"):
        UpSettings(variant="C")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no coalition started"):
        down(tmp_path)
    (tmp_path / RUN_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="not a run file"):
        down(tmp_path)
