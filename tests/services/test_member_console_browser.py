"""The member console in a real headless browser (Debian's chromium driven by playwright), served by uvicorn on
loopback over the Anvil coalition with a committed model.

As the hospital's staff would: open the console with the operator token in the URL's fragment, see the lineage,
upload an image with its truth mask and see both models' overlays side by side, fine-tune locally and watch the
job's progress move to done, then upload a non-image and ask for the committee's ranking (this site names no
unlabelled folder): a clear message each time. No console error but the 4xx answers of those last two. A new tab
without the token is asked for it and signs in. The committee's ranking for real on a coalition of its own: refused
while one hospital's model is committed (409), ranked with thumbnails once a second hospital's is. Screenshots are
kept in out/test-artifacts/console*.png.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import pytest
import torch

from services.member.app import create_app
from services.member.console import PredictionOut
from services.member.predictions import picture
from tclearn.coalition.member import propose
from tclearn.coalition.rounds import settle
from tclearn.ledger.localchain import LocalNode
from tclearn.site.config import load_site_config
from tclearn.site.open import Site, open_site
from tclearn.types import ModelState, Variant
from tests.services.conftest import HOSPITALS, OPERATOR_TOKEN, Coalition3, deploy_sites
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


@contextmanager
def opened(coalition: Coalition3) -> Iterator[Console]:
    """hospital-1's member API on loopback and its console open in headless chromium."""
    executable = browser_binary()
    from playwright.sync_api import expect, sync_playwright

    app = create_app(coalition.sites[0], operator_token=OPERATOR_TOKEN, history_ttl=0.0)
    problems: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve_app(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{url}/console#token={OPERATOR_TOKEN}")
            head = coalition.deployed.client.head()
            expect(page.locator("#status")).to_contain_text(f"head: model {head};", timeout=20_000)
            yield Console(url, browser, page, problems)
        finally:
            browser.close()


@pytest.fixture
def console(coalition_a: Coalition3) -> Iterator[Console]:
    with opened(coalition_a) as console:
        yield console


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
    expect(page.locator("#ranking-message.error")).to_contain_text("names no unlabelled folder")
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


POOL = 5  # images in hospital-1's unlabelled folder
ALL_THUMBNAILS_SHOWN = """() => {
  const imgs = [...document.querySelectorAll('#ranked img.thumbnail')];
  return imgs.length > 0 && imgs.every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
}"""


def committed_by(sites: list[Site], index: int) -> int:
    """An increment of hospital `index + 1`, trained and settled by every site: its model id (committed)."""
    proposal = propose(sites[index].coalition, sites[index].hospital)
    assert settle([(s.coalition, s.hospital) for s in sites], proposal.submission.model_id) is ModelState.COMMITTED
    return proposal.submission.model_id


@pytest.fixture
def ranking_coalition(anvil_node: LocalNode, tmp_path: Path) -> Iterator[Coalition3]:
    """A variant A coalition of its own (the ranking needs its lineage as this test leaves it) whose model 1,
    hospital-1's, is committed; hospital-1's site has an unlabelled folder of POOL images."""
    torch.set_num_threads(1)
    with deploy_sites(anvil_node, tmp_path, Variant.A) as deployed:
        unlabelled = tmp_path / "unlabelled"
        unlabelled.mkdir()
        for image in sorted((tmp_path / "data" / "hospital-1" / "train" / "images").iterdir())[:POOL]:
            shutil.copy(image, unlabelled / image.name)
        folders = {"unlabelled": str(unlabelled), "rankings": str(tmp_path / "rankings")}
        first = open_site(load_site_config(deployed.configs[0], overrides=folders))
        sites = [first, *(deployed.open(i) for i in range(1, HOSPITALS))]
        try:
            yield Coalition3(deployed, sites, committed_by(sites, 0))
        finally:
            for site in sites:
                site.close()


def test_the_console_ranks_unlabelled_images_with_the_committee(ranking_coalition: Coalition3) -> None:
    """For real: the committee of hospital-1's model alone is refused (409), a bad budget too (400); once
    hospital-2's increment is committed the ranking shows every image with its thumbnail (fetched with the token)
    and the chosen ones marked, and the two models that sat. A 404 of the router (intercepted) is the one case
    called "not available"."""
    from playwright.sync_api import Request, Route, expect

    with opened(ranking_coalition) as console:
        page, problems = console.page, console.problems
        thumbnails: list[Request] = []
        page.on("request", lambda r: thumbnails.append(r) if "/thumbnails/" in r.url else None)
        page.fill("#rank-budget", "40%")
        page.click("#rank")
        expect(page.locator("#ranking-message.error")).to_contain_text("at least two different hospitals")
        one_model = page.inner_text("#ranking-message")
        page.fill("#rank-budget", "ten")
        page.click("#rank")
        expect(page.locator("#ranking-message.error")).to_contain_text("budget 'ten' must be a count")
        refused = list(problems)

        second = committed_by(ranking_coalition.sites, 1)
        page.fill("#rank-budget", "40%")
        page.select_option("#rank-measure", "entropy")
        page.click("#rank")
        expect(page.locator("#ranked tbody tr")).to_have_count(POOL, timeout=60_000)
        page.wait_for_function(ALL_THUMBNAILS_SHOWN, timeout=30_000)
        ranked = page.locator("#ranking-message").inner_text()
        ranks = page.eval_on_selector_all("#ranked tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
        names = page.eval_on_selector_all("#ranked tbody tr", "rows => rows.map(r => r.cells[2].textContent)")
        chosen = page.eval_on_selector_all("#ranked tbody tr", "rows => rows.map(r => r.classList.contains('chosen'))")
        marked = page.locator("#ranked tbody tr.chosen .badge", has_text="chosen").count()
        sizes = page.eval_on_selector_all("#ranked img.thumbnail", "imgs => imgs.map(i => i.naturalWidth)")
        sat = page.eval_on_selector_all("#ranking-committee tbody tr", "rows => rows.map(r => r.innerText)")
        page.screenshot(path=str(ARTIFACTS / "console-ranking.png"), full_page=True)
        asked = [(r.url, r.all_headers().get("authorization")) for r in thumbnails]
        clean = problems[len(refused) :]

        def no_routes(route: Route) -> None:
            body = json.dumps({"code": "http_error", "message": "Not Found"})
            route.fulfill(status=404, content_type="application/json", body=body)

        page.route("**/active/rank", no_routes)
        page.click("#rank")
        expect(page.locator("#ranking-message.error")).to_have_text(
            "Committee ranking is not available on this member service."
        )
        hidden_after = page.locator("#ranking-result").is_hidden()

    unlabelled = sorted(p.name for p in (ranking_coalition.deployed.folder / "unlabelled").iterdir())
    assert "the chain holds 1 that verify" in one_model
    assert len(refused) == 2 and all("Failed to load resource" in p for p in refused), refused
    assert ranked.startswith(f"{POOL} images ranked by committee (entropy); the first 2 chosen"), ranked
    assert ranks == [str(r) for r in range(1, POOL + 1)] and sorted(names) == unlabelled
    assert chosen == [True, True, False, False, False] and marked == 2
    assert all(width > 0 for width in sizes) and len(sizes) == POOL
    assert [row.split("\t")[0] for row in sat] == [f"model {second}", f"model {ranking_coalition.committed}"]
    assert "hospital-2" in sat[0] and "hospital-1" in sat[1]
    assert len(asked) == POOL and all("token" not in url and auth == f"Bearer {OPERATOR_TOKEN}" for url, auth in asked)
    assert clean == []
    assert hidden_after
