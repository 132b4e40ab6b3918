"""Active learning through the member API on a committed lineage (embedded chain, real vault): `POST /active/rank`
ranks the site's unlabelled folder only, and the thumbnails it names are served to the operator only."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from tclearn.coalition.context import Coalition
from tclearn.learning.choices import DEFAULT_DENSITY
from tclearn.state.db import Database
from tclearn.vault.signing import sign_request
from tests.services.conftest import member_client, operator_headers
from tests.site.lineage import founded, grow, site_of

OPERATOR = operator_headers()
POOL = 5


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Coalition, Path]:
    folder = tmp_path_factory.mktemp("active-api")
    return grow(founded(folder)), folder


@pytest.fixture(scope="module")
def peer(lineage: tuple[Coalition, Path]) -> LocalAccount:
    """Another hospital of the coalition: a peer, not this site's operator."""
    return lineage[0].hospitals[1].account


@pytest.fixture(scope="module")
def api(lineage: tuple[Coalition, Path]) -> Iterator[TestClient]:
    co, folder = lineage
    unlabelled = folder / "unlabelled"
    for ward in ("ward-1", "ward-2"):  # sub-folders of the unlabelled folder (one directly in it is a DICOM series)
        (unlabelled / ward).mkdir(parents=True)
    images = sorted((folder / "data" / "hospital-3" / "train" / "images").iterdir())
    for image in images[:POOL]:
        shutil.copy(image, unlabelled / "ward-1" / image.name)
    shutil.copy(images[POOL], unlabelled / "ward-2" / images[POOL].name)
    (folder / "elsewhere").mkdir()
    shutil.copy(images[POOL + 1], folder / "elsewhere" / images[POOL + 1].name)
    site = site_of(co, folder, unlabelled)
    with member_client(site, db=Database(f"sqlite:///{folder}/jobs.db"), history_ttl=0.0) as client:
        yield client


def test_the_operator_ranks_the_unlabelled_folder(api: TestClient) -> None:
    made = api.post("/active/rank", headers=OPERATOR, json={"budget": "40%", "committee": 2, "unlabelled": "ward-1"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert [m["model_id"] for m in body["committee"]] == [3, 1] and body["budget"] == 2
    assert body["measure"] == "entropy" and body["density"] == DEFAULT_DENSITY  # the defaults
    assert len(body["ranked"]) == POOL and [r["chosen"] for r in body["ranked"]].count(True) == 2
    first = body["ranked"][0]["thumbnail"]
    assert first.startswith(f"/active/rankings/{body['ranking_id']}/thumbnails/1-")
    got = api.get(first, headers=OPERATOR)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content.startswith(b"\x89PNG")


def test_a_sub_folder_may_be_ranked(api: TestClient) -> None:
    body = {"budget": 1, "unlabelled": "ward-2", "method": "tta", "density": 0}
    made = api.post("/active/rank", headers=OPERATOR, json=body)
    assert made.status_code == 200, made.text
    assert len(made.json()["ranked"]) == 1 and made.json()["method"] == "tta" and made.json()["density"] == 0.0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"budget": 1, "unlabelled": "../elsewhere"}, 403, "outside this site's unlabelled folder"),
        ({"budget": 99, "unlabelled": "ward-1"}, 400, "budget 99 must be between 1 and the 5 images"),
        ({"budget": 1, "method": "vote"}, 422, ""),
        ({"budget": 1, "committee": 1}, 422, ""),
        ({"budget": 1, "density": -1}, 422, "greater than or equal to 0"),
        ({"budget": 1, "method": "dropout", "unlabelled": "ward-1"}, 400, "no dropout layer"),
    ],
)
def test_bad_requests_are_refused(api: TestClient, body: dict[str, object], status: int, message: str) -> None:
    refused = api.post("/active/rank", headers=OPERATOR, json=body)
    assert refused.status_code == status, refused.text
    assert message in json.dumps(refused.json())


def test_only_the_operator_ranks_and_sees_thumbnails(api: TestClient, peer: LocalAccount) -> None:
    assert api.post("/active/rank", json={"budget": 1}).status_code == 401
    audience = api.app.state.audience  # type: ignore[attr-defined]
    body = json.dumps({"budget": 1}).encode()
    signed = sign_request(peer, audience, "POST", "/active/rank", hashlib.sha256(body).hexdigest())
    refused = api.post("/active/rank", headers={**signed, "content-type": "application/json"}, content=body)
    assert refused.status_code == 403 and "its operator asks for it" in refused.json()["message"]
    missing = api.get("/active/rankings/0123456789abcdef/thumbnails/1-x.png", headers=OPERATOR)
    assert missing.status_code == 404
    assert api.get("/active/rankings/..%2F..%2Fetc/thumbnails/1-x.png", headers=OPERATOR).status_code == 404
