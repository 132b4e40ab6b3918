"""The auditor's privacy view: `/api/privacy` and the dashboard's Privacy budget panel (in Debian's chromium, as
tests/services/test_auditor_browser.py drives it) over a DP coalition on the embedded chain whose rounds charged
two hospitals, one increment declaring less than its mechanism spends and one raw submission charged less than
its metadata declares (tests/audit/test_privacy.py, `charged_run`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.auditor.app import create_app
from tclearn.audit.follow import ChainFollower
from tclearn.learning.privacy import Mechanism, composed
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.values import epsilon_of
from tclearn.state.db import Database
from tests.audit.test_privacy import ChargedRun, charged_run
from tests.coalition.test_privacy_rounds import DECLARED
from tests.services.test_auditor_browser import ARTIFACTS, browser_binary
from tests.vault.conftest import serve_app

TOKEN = secrets.token_urlsafe(24)
AUTH = {"authorization": f"Bearer {TOKEN}"}
TWO = composed([Mechanism(DECLARED.noise_multiplier, DECLARED.sample_rate, DECLARED.steps)] * 2, DECLARED.delta)


@dataclass
class Audited:
    run: ChargedRun
    app: FastAPI

    @property
    def client(self) -> LedgerClient:
        client = self.run.co.client
        assert isinstance(client, LedgerClient)
        return client


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    run = charged_run()
    client = run.co.client
    assert isinstance(client, LedgerClient)
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('auditor-privacy')}/state.db")
    app = create_app(ChainFollower(client, db), run.co.store, token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest())
    yield Audited(run, app)
    db.engine.dispose()


def test_the_api_gives_each_hospitals_spending_composition_and_findings(audited: Audited) -> None:
    api, run = TestClient(audited.app), audited.run
    assert api.get("/api/privacy").status_code == 401

    body = api.get("/api/privacy", headers=AUTH).json()

    h0, h1, h2, _ = (h.address for h in run.co.hospitals)
    members = {m["address"]: m for m in body["members"]}
    for address, m in members.items():
        assert m["spent_units"] == audited.client.privacy_spent(address)
        assert m["cap"] == epsilon_of(audited.client.parameters().epsilon_cap)
    assert [i["model_id"] for i in members[h0]["increments"]] == run.honest[:2]
    assert members[h0]["composition"]["epsilon"] == pytest.approx(TWO)
    assert members[h0]["composition"]["epsilon"] < members[h0]["spent"]  # tighter than the plain sum
    assert members[h1]["composition"]["epsilon"] is not None  # three increments of one delta and accountant
    assert members[h2]["increments"] == [] and members[h2]["composition"]["epsilon"] == 0.0
    assert body["ok"] is False
    assert [(f["severity"], f["model_id"]) for f in body["findings"]] == [
        ("error", run.forged),
        ("error", run.under),
    ]
    report = api.get("/report.json", headers=AUTH).json()
    assert report["privacy"]["findings"] == body["findings"]


@pytest.mark.browser
def test_the_dashboard_shows_the_privacy_budget_panel(audited: Audited) -> None:
    executable = browser_binary()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with serve_app(audited.app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            page.goto(f"{url}/#token={TOKEN}")
            page.locator("#privacy-budgets tbody tr").nth(3).wait_for(timeout=20_000)
            rows = page.eval_on_selector_all(
                "#privacy-budgets tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
            )
            bars = page.eval_on_selector_all(
                "#privacy-budgets svg.budget rect.spent", "rects => rects.map(r => Number(r.getAttribute('width')))"
            )
            ticks = page.eval_on_selector_all("#privacy-budgets svg.budget line.composed", "lines => lines.length")
            summary = page.inner_text("#privacy-summary")
            findings = page.eval_on_selector_all("#privacy-findings li", "items => items.map(i => i.textContent)")
            page.locator("#privacy").screenshot(path=str(_artifact("auditor-privacy.png")))
        finally:
            browser.close()
    co, spent = audited.run.co, audited.client.privacy_spent
    assert [r[0] for r in rows] == [h.name for h in co.hospitals]
    assert rows[0][1] == _number(epsilon_of(spent(co.hospitals[0].address)))
    assert rows[0][2].startswith(_number(TWO)) and "delta 0.00001 (rdp)" in rows[0][2]
    cap = epsilon_of(audited.client.parameters().epsilon_cap)
    assert [r[3] for r in rows] == [_number(cap)] * 4
    cap_units = audited.client.parameters().epsilon_cap
    assert rows[0][4] == _number(epsilon_of(cap_units - spent(co.hospitals[0].address)))
    assert rows[2][6] == "none" and f"model {audited.run.honest[0]} (committed)" in rows[0][6]
    spent_units = [spent(h.address) for h in co.hospitals]
    assert bars == pytest.approx([160 * s / cap_units for s in spent_units])  # 160 px: the cap (none spent more)
    assert bars[0] > 0 and bars[1] > 0 and bars[2] == bars[3] == 0
    assert ticks == 2  # the accountant's composition of each hospital that spent
    assert rows[2][2] == "— (no increment)"
    assert f"Each hospital's cap on chain: epsilon {_number(cap)}" in summary and "2 findings, 2 errors" in summary
    assert findings[0].startswith(f"error: model {audited.run.forged} declares epsilon")
    assert findings[1].startswith(f"error: model {audited.run.under} was charged epsilon")
    assert problems == []


def _number(value: float) -> str:
    """As the dashboard writes an epsilon: six significant digits, no trailing zeros."""
    return f"{float(f'{value:.6g}')!r}".removesuffix(".0")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
