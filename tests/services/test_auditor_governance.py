"""The auditor's governance view: /api/governance and the dashboard's Governance section (in Debian's chromium,
as tests/services/test_auditor_browser.py drives it) over a coalition on Anvil whose three founders executed,
rejected and left pending one proposal each."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.auditor.app import create_app
from tclearn.audit.follow import ChainFollower
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters, Remove, SetRoles
from tclearn.ledger.localchain import LocalNode
from tclearn.state.db import Database
from tclearn.types import Role, Variant
from tclearn.vault.store import FsspecStore
from tests.conftest import node_chain
from tests.services.test_auditor_browser import browser_binary
from tests.vault.conftest import serve_app

TOKEN = secrets.token_urlsafe(24)


@dataclass
class Governed:
    client: LedgerClient
    founders: list[str]
    newcomer: str
    app: FastAPI


@pytest.fixture(scope="module")
def governed(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    chain = node_chain(anvil_node)
    deployer, *founders = chain.dev_keys[:4]
    newcomer = chain.dev_keys[4]
    parameters = Parameters(policy_hash=bytes.fromhex(AcceptancePolicy().sha256()))
    client, tx = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.A,
        genesis_hash=os.urandom(32),
        genesis_uri="vault://genesis",
        parameters=parameters,
        founders=[
            Admit(f.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"founder-{i + 1}")
            for i, f in enumerate(founders)
        ],
    )
    admitted = client.propose(founders[0], Admit(newcomer.address, Role.MEMBER, name="late")).id
    client.ballot(founders[1], admitted, True)
    client.execute(deployer, admitted)
    rejected = client.propose(founders[0], Remove(founders[2].address)).id
    client.ballot(founders[1], rejected, False)
    client.ballot(founders[2], rejected, False)
    client.propose(founders[1], SetRoles(founders[0].address, Role.MEMBER))  # pending
    folder = tmp_path_factory.mktemp("auditor-gov")
    db = Database(f"sqlite:///{folder}/state.db")
    follower = ChainFollower(client, db, start_block=tx.block_number)
    store = FsspecStore(f"file://{folder}/vault")
    app = create_app(follower, store, token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest())
    yield Governed(client, [f.address for f in founders], newcomer.address, app)
    db.engine.dispose()


def test_the_api_lists_every_proposal_with_its_ballots(governed: Governed) -> None:
    api = TestClient(governed.app)
    assert api.get("/api/governance").status_code == 401
    proposals = api.get("/api/governance", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert [(p["kind"], p["state"], p["approvals"], p["rejections"]) for p in proposals] == [
        ("admit", "executed", 2, 0),
        ("remove", "rejected", 1, 2),
        ("roles", "pending", 1, 0),
    ]
    assert proposals[0]["description"] == f"admit late ({governed.newcomer}) as member"
    assert [(b["member_name"], b["approve"]) for b in proposals[1]["ballots"]] == [
        ("founder-1", True),
        ("founder-2", False),
        ("founder-3", False),
    ]
    assert proposals[2]["proposer_name"] == "founder-2" and proposals[2]["needed"] == 3  # 4 members: 2/3 is 3


@pytest.mark.browser
def test_the_dashboard_shows_who_voted_how(governed: Governed) -> None:
    executable = browser_binary()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with serve_app(governed.app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/#token={TOKEN}")
            page.locator("#governance tbody tr").nth(2).wait_for(timeout=20_000)
            rows = page.eval_on_selector_all(
                "#governance tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
            )
            summary = page.inner_text("#governance-summary")
        finally:
            browser.close()
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert rows[0][1] == "admit late (late) as member" and rows[0][3] == "executed"
    assert rows[1][1] == "remove founder-3" and rows[1][3] == "rejected" and rows[1][4] == "1 / 3"
    assert "founder-2 ✗" in rows[1][7] and "founder-3 ✗" in rows[1][7] and "founder-1 ✓" in rows[1][7]
    assert rows[2][2] == "founder-2" and rows[2][3] == "pending"
    assert "3 proposals, 1 pending" in summary
    assert problems == []
