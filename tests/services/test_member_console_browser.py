"""The member console in a real headless browser (Debian's chromium driven by playwright), served by uvicorn on
loopback over the Anvil coalition with a committed model.

As the hospital's staff would: open the console with the operator token in the URL's fragment, see the lineage,
upload an image with its truth mask and see both models' overlays side by side, fine-tune locally and watch the
job's progress move to done, then upload a non-image and ask for the committee's ranking (not on this member
API yet): a clear message each time. No console error but the 4xx answers of those last two. A new tab without
the token is asked for it and signs in. Screenshots are kept in out/test-artifacts/console*.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import pytest

from services.member.app import create_app
from services.member.console import PredictionOut
from services.member.predictions import picture
from tests.services.conftest import OPERATOR_TOKEN, Coalition3
from tests.services.test_auditor_browser import ARTIFACTS, browser_binary
from tests.services.test_console_predictions import UNET_3D, kept, volume_with_cube
from tests.vault.conftest import serve_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.anvil, pytest.mark.browser, pytest.mark.slow]

# The newest job is the table's first row: its progress bar's values as the page redraws them.
RECORD_PROGRESS = """() => {
  window.progressSeen = [];
  new MutationObserver(() => {
    const bar = document.querySelector('#jobs tbody tr:first-child progress');
    if (bar) window.progressSeen.push(Number(bar.value));
  }).observe(document.querySelector('#jobs tbody'), {childList: true, subtree: true, attributes: true});
}"""


@dataclass
class Console:
    url: str
    browser: Browser
    page: Page  # signed in with the token in the URL's fragment, the coalition loaded
    problems: list[str]  # console errors and warnings, page errors


@pytest.fixture
def console(coalition_a: Coalition3) -> Iterator[Console]:
    """hospital-1's member API on loopback and its console open in headless chromium."""
    executable = browser_binary()
    from playwright.sync_api import expect, sync_playwright

    app = create_app(coalition_a.sites[0], operator_token=OPERATOR_TOKEN, history_ttl=0.0)
    problems: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve_app(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{url}/console#token={OPERATOR_TOKEN}")
            head = coalition_a.deployed.client.head()
            expect(page.locator("#status")).to_contain_text(f"head: model {head};", timeout=20_000)
            yield Console(url, browser, page, problems)
        finally:
            browser.close()


def test_the_console_predicts_compares_fine_tunes_and_names_bad_input(
    coalition_a: Coalition3, console: Console, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    global_set = coalition_a.deployed.folder / "data" / "global"
    image = sorted((global_set / "images").iterdir())[0]
    mask = global_set / "masks" / image.name
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    page, problems, head = console.page, console.problems, coalition_a.deployed.client.head()
    address_bar = page.url
    lineage_rows = page.locator("#models tbody tr").count()
    head_row = page.locator("#models tbody tr", has_text=f"{head} (head)").inner_text()

    page.select_option("#model-a", str(coalition_a.committed))
    page.select_option("#model-b", "0")
    page.set_input_files("#image", str(image))
    page.set_input_files("#mask", str(mask))
    page.click("#predict-button")
    for which in ("a", "b"):
        page.wait_for_function(
            f"() => {{ const i = document.querySelector('#result-{which} img.overlay');"
            " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
    sizes = "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])"
    overlays = page.eval_on_selector_all("img.overlay", sizes)
    shown = page.eval_on_selector_all(".result", "panels => panels.map(p => Number(p.dataset.model))")
    predicted = page.inner_text("#predict-message")
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

    page.evaluate(RECORD_PROGRESS)
    jobs_before = page.locator("#jobs tbody tr").count()
    page.click("#finetune")
    expect(page.locator("#jobs tbody tr")).to_have_count(jobs_before + 1, timeout=20_000)
    newest = page.locator("#jobs tbody tr").first
    expect(newest).to_contain_text("finetune", timeout=20_000)
    expect(newest).to_have_class("job job-done", timeout=120_000)
    progress = page.evaluate("window.progressSeen")
    outcome = newest.inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-jobs.png"), full_page=True)
    clean = list(problems)

    page.set_input_files("#image", str(notes))
    page.set_input_files("#mask", [])
    page.click("#predict-button")
    expect(page.locator("#predict-message.error")).to_contain_text("cannot read image 'notes.png'")
    results_after_bad = page.locator(".result").count()
    page.click("#rank")
    expect(page.locator("#ranking-message.error")).to_have_text(
        "Committee ranking is not available on this member service."
    )
    page.screenshot(path=str(ARTIFACTS / "console-bad-upload.png"), full_page=True)

    fresh = console.browser.new_context().new_page()  # a new tab's session: no token yet: the form
    fresh.goto(f"{console.url}/console")
    fresh.locator("#login #token").wait_for(timeout=20_000)
    asked = fresh.inner_text("#login-message")
    fresh.fill("#token", OPERATOR_TOKEN)
    fresh.click("#login button[type=submit]")
    expect(fresh.locator("#status")).to_contain_text(f"head: model {head};", timeout=20_000)
    form_hidden = fresh.locator("#login").is_hidden()

    assert "token=" not in address_bar
    assert "operator token" in asked and form_hidden
    assert lineage_rows == coalition_a.deployed.client.model_count()
    assert "committed" in head_row
    assert shown == [coalition_a.committed, 0] and overlays == [[512, 256], [512, 256]]  # truth beside prediction
    assert f"model {coalition_a.committed}:" in predicted and "model 0:" in predicted
    assert progress and progress[0] < 1.0 and progress[-1] == 1.0 and progress == sorted(progress)
    assert "dice on L" in outcome and "finetuned" in outcome
    assert clean == []
    assert results_after_bad == 0
    assert len(problems) == 2 and all("Failed to load resource" in p for p in problems[len(clean) :]), problems
    assert all((ARTIFACTS / name).stat().st_size > 10_000 for name in ("console.png", "console-jobs.png"))


def test_the_slice_browser_steps_through_a_volume_without_predicting_again(console: Console, tmp_path: Path) -> None:
    """The coalition here is 2-D: the page is given a real 3-D prediction (a cube found in a 16x16x12 volume) and
    its real slice pictures by intercepting the two prediction routes; everything else is the live service."""
    from playwright.sync_api import Route, expect

    predicted = kept(volume_with_cube(), UNET_3D)
    asked: dict[str, list[int]] = {"predictions": [], "slices": []}

    def prediction(route: Route) -> None:
        asked["predictions"].append(predicted.model_id)
        body = PredictionOut.of(predicted).model_dump()
        route.fulfill(status=201, content_type="application/json", body=json.dumps(body))

    def slice_picture(route: Route) -> None:
        z = int(parse_qs(urlparse(route.request.url).query)["z"][0])
        asked["slices"].append(z)
        route.fulfill(status=200, content_type="image/png", body=picture(predicted, z))

    upload = tmp_path / "volume.nii"
    upload.write_bytes(b"the page sends it; the intercepted route answers")
    page = console.page
    page.route("**/models/*/predictions*", prediction)
    page.route("**/predictions/*/overlay.png*", slice_picture)

    page.set_input_files("#image", str(upload))
    page.click("#predict-button")
    first = predicted.slices[0]
    expect(page.locator("#result-a .slice-label")).to_have_text(f"z {first} of 11", timeout=20_000)
    slider_max = page.get_attribute("#result-a input.slice", "max")
    page.click("#result-a button.next")
    expect(page.locator("#result-a .slice-label")).to_have_text(f"z {first + 1} of 11")
    page.locator("#result-a input.slice").fill("5")  # a range input: fill sets it and fires change
    expect(page.locator("#result-a img.overlay")).to_have_attribute("data-z", "5")
    in_slice = page.locator("#boxes-a tbody tr.in-slice").count()
    page.locator("#result-a input.slice").fill("10")
    expect(page.locator("#result-a img.overlay")).to_have_attribute("data-z", "10")
    outside = page.locator("#boxes-a tbody tr.in-slice").count()
    page.screenshot(path=str(ARTIFACTS / "console-volume.png"), full_page=True)

    assert slider_max == "11"
    assert asked["predictions"] == [predicted.model_id]  # one prediction, every slice drawn from it
    assert asked["slices"] == [first, first + 1, 5, 10]
    assert in_slice == 1 and outside == 0  # the cube spans z 3 to 6
    assert console.problems == []
