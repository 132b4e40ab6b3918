"""A service's /docs page in a real headless browser with every address but loopback cut off: Swagger UI must
render the vault's API from the assets the service itself serves (`services/docs.py`). A screenshot is kept in
out/test-artifacts/docs.png. Skipped without a system chromium, except in CI (see test_auditor_browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.vault.app import create_app
from tclearn.state.db import Database
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.store import FsspecStore
from tests.services.test_auditor_browser import ARTIFACTS, browser_binary
from tests.vault.conftest import serve_app

pytestmark = pytest.mark.browser


@pytest.fixture
def vault_url(tmp_path: Path) -> Iterator[str]:
    db = Database(f"sqlite:///{tmp_path}/access.db")
    store = FsspecStore(f"file://{tmp_path}/store")
    with serve_app(lambda url: create_app(store, db, StaticDirectory({}), Audience.of(url))) as url:
        yield url
    db.dispose()


def test_the_docs_page_renders_offline(vault_url: str) -> None:
    executable = browser_binary()
    from playwright.sync_api import Route, sync_playwright

    outside: list[str] = []
    problems: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # the network a hospital's operator may not have
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_loopback)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            page.goto(vault_url + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            title = page.inner_text(".swagger-ui .info .title")
            paths: Any = page.eval_on_selector_all(
                ".opblock-summary-path", "nodes => nodes.map(n => n.getAttribute('data-path'))"
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
        finally:
            browser.close()

    assert title.startswith("tclearn vault")
    assert {"/blobs/{sha256}", "/keyrings/{sha256}", "/access-log", "/health"} <= set(paths)
    assert outside == [] and problems == []
