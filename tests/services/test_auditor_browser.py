"""The auditor's dashboard in a real headless browser (Debian's chromium driven by playwright).

`tclearn auditor serve` runs as a subprocess on a free loopback port over a real coalition run on Anvil, with no
token in its settings: it prints the dashboard's URL with a token made for the run, which the test opens as a
user would (the page keeps the token and sends it with every API call). The page must render the lineage
with every committed model, fill its tables and log no console error. A screenshot is kept in
out/test-artifacts/auditor.png. Playwright never downloads a browser here: it drives the system chromium
(`make browser-tools` installs it). Without one the test is skipped, except in CI (CI=true), where a missing
browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing_tool
from tests.services.coalition_run import CoalitionRun
from tests.vault.conftest import free_port

pytestmark = [pytest.mark.anvil, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser_binary() -> str:
    """The system browser, or a skip (a failure in CI, which must run this test)."""
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is not None:
        return found
    missing_tool(f"no headless browser ({', '.join(BROWSERS)}) on PATH; run `make browser-tools`")


@pytest.fixture
def auditor_url(coalition_run: CoalitionRun, tmp_path: Path) -> Iterator[str]:
    """`tclearn auditor serve` over the run, as a user would start it: the dashboard URL it prints."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tclearn.cli.app",
        "auditor",
        "serve",
        "--deployment",
        str(coalition_run.deployment_file),
        "--vault",
        str(coalition_run.vault),
        "--state",
        f"sqlite:///{tmp_path}/state.db",
        "--port",
        str(port),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCLEARN_AUDITOR_")}
    log = tmp_path / "auditor.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the auditor did not start:\n{log.read_text()}")
            time.sleep(0.2)
        printed = [line for line in log.read_text().splitlines() if line.startswith("dashboard: ")]
        assert printed and printed[0].startswith(f"dashboard: {url}/#token="), log.read_text()
        assert httpx.get(f"{url}/api/lineage", timeout=10).status_code == 401  # the API wants the token
        yield printed[0].removeprefix("dashboard: ")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_dashboard_renders_the_lineage_without_console_errors(
    coalition_run: CoalitionRun, auditor_url: str
) -> None:
    executable = browser_binary()
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}") if msg.type in ("error", "warning") else None
                ),
            )
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))

            page.goto(auditor_url)
            page.wait_for_selector("#lineage .node", timeout=20_000)
            address_bar = page.url  # the token has left the URL for the tab's session storage
            page.locator("#votes tbody tr").first.wait_for(timeout=20_000)
            page.locator("#integrity tbody tr").first.wait_for(timeout=20_000)
            committed = page.eval_on_selector_all(
                "#lineage .node[data-state=committed]", "nodes => nodes.map(n => Number(n.dataset.id))"
            )
            models = page.eval_on_selector_all("#lineage .node", "nodes => nodes.length")
            edges = page.eval_on_selector_all("#lineage .edge", "lines => lines.length")
            table_rows = page.eval_on_selector_all("#models tbody tr", "rows => rows.length")
            score_points = page.eval_on_selector_all("#scores .score-point", "points => points.length")
            integrity = page.inner_text("#integrity-summary")
            status = page.inner_text("#status")
            strata_tables = page.eval_on_selector_all("#strata table.strata", "tables => tables.length")
            strata_rows = page.eval_on_selector_all("#strata tr.stratum", "rows => rows.length")
            strata_names = page.eval_on_selector_all(
                "#strata tr.stratum td:nth-child(2)", "cells => cells.map(c => c.textContent)"
            )

            rejected = next(
                c.id for c in coalition_run.result.history.candidates.values() if c.state.name == "REJECTED"
            )
            page.click(f"#lineage .node[data-id='{rejected}']")
            expect(page.locator("#detail-id")).to_have_text(str(rejected))
            detail = page.inner_text("#detail-summary")

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "auditor.png"), full_page=True)
        finally:
            browser.close()

    history = coalition_run.result.history
    assert sorted(committed) == coalition_run.committed
    assert models == table_rows == len(history.candidates)
    assert edges == len(history.candidates) - 1  # every model but genesis has a parent
    assert score_points == sum(1 for c in history.candidates.values() if c.votes)
    assert "blobs match the hashes on chain" in integrity
    assert f"head: model {history.head}" in status
    assert detail.startswith("rejected")
    head_votes = coalition_run.result.evidence[history.head]  # the head is shown first: a table of strata per vote
    assert strata_tables == len(head_votes) and strata_rows == sum(len(e.strata) for e in head_votes.values())
    assert "finding:small" in strata_names
    assert "token=" not in address_bar
    assert problems == []
    assert (ARTIFACTS / "auditor.png").stat().st_size > 10_000
