"""A real coalition run on Anvil, played once per session, and the auditor's parts over it (fixtures)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tclearn.audit.follow import ChainFollower
from tclearn.config import Deployment, save_deployment
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of, open_deployment
from tclearn.ledger.localchain import LocalNode
from tclearn.simulation.demo import DemoResult, DemoSettings, run_demo
from tclearn.state.db import Database
from tclearn.types import ModelState
from tclearn.vault.store import FsspecStore
from tests.conftest import node_chain

# 3 hospitals (one Byzantine), 3 rounds of 1 epoch: a few seconds, with commits and a rejection.
SETTINGS = DemoSettings(members=3, byzantine=1, rounds=3, epochs=1)


@dataclass
class CoalitionRun:
    out: Path
    deployment_file: Path
    deployment: Deployment
    client: LedgerClient
    result: DemoResult

    @property
    def vault(self) -> Path:
        return self.out / "vault"

    @property
    def committed(self) -> list[int]:
        return sorted(c.id for c in self.result.history.candidates.values() if c.state == ModelState.COMMITTED)


@pytest.fixture(scope="session")
def coalition_run(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> CoalitionRun:
    out = tmp_path_factory.mktemp("coalition-run")
    result = run_demo(SETTINGS, node_chain(anvil_node), out, chain_label="anvil")
    first = result.client.events()[0]
    path = save_deployment(
        deployment_of(result.client, first.block_number, first.tx_hash, str(result.summary["variant"])),
        out / "deployment.json",
    )
    deployment, client = open_deployment(path)
    run = CoalitionRun(out, path, deployment, client, result)
    assert run.committed[1:] and result.summary["rejected"] >= 1, result.summary  # the run shows both outcomes
    return run


@dataclass
class Auditor:
    run: CoalitionRun
    follower: ChainFollower
    store: FsspecStore

    def blob_file(self, sha256: str) -> Path:
        return Path(self.store.blob_path(sha256.removeprefix("0x")))


@pytest.fixture
def auditor_parts(coalition_run: CoalitionRun, tmp_path: Path) -> Iterator[Auditor]:
    """A follower with a fresh state database and a copy of the run's vault (each test may damage its own)."""
    shutil.copytree(coalition_run.vault, tmp_path / "vault")
    db = Database(f"sqlite:///{tmp_path}/state.db")
    follower = ChainFollower(coalition_run.client, db, start_block=coalition_run.deployment.block)
    yield Auditor(coalition_run, follower, FsspecStore(f"file://{tmp_path}/vault"))
    db.engine.dispose()
