"""The member console's routes over HTTP against a real Anvil deployment with a committed model: the page and its
files, the lineage with scores, predictions kept for the slice browser, and bad input refused with nothing kept."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.member.predictions import PredictionCache
from services.member.uploads import MAX_UPLOAD_BYTES
from tests.services.conftest import Coalition3, member_client, operator_headers
from tests.services.test_member import signed

OPERATOR = operator_headers()


@pytest.fixture(scope="module")
def api(coalition_a: Coalition3) -> Iterator[TestClient]:
    with member_client(coalition_a.sites[0], history_ttl=0.0) as client:
        yield client


def kept(api: TestClient) -> PredictionCache:
    return api.app.state.predictions  # type: ignore[attr-defined, no-any-return]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def scan_and_mask(folder: Path) -> tuple[bytes, bytes]:
    """The first global test image and its mask, as a hospital would upload them."""
    image = sorted((folder / "images").iterdir())[0]
    return image.read_bytes(), (folder / "masks" / image.name).read_bytes()


def nifti(shape: tuple[int, ...]) -> bytes:
    picture = nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), np.eye(4))
    return picture.to_bytes()


def test_the_console_page_is_served_without_auth_under_a_strict_csp(api: TestClient) -> None:
    page = api.get("/console")
    own, shared = api.get("/console/static/app.js"), api.get("/shared/page.js")

    assert page.status_code == 200 and 'id="predict-form"' in page.text and 'id="rank-form"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "blob:" in csp
    assert own.status_code == 200 and "showSlice" in own.text
    assert f"MAX_UPLOAD_BYTES = {MAX_UPLOAD_BYTES >> 20} * 1024 * 1024;" in own.text  # the page checks the same limit
    assert shared.status_code == 200 and "bearerSession" in shared.text
    for text in (page.text, own.text, shared.text):
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org", "")


def test_the_lineage_carries_each_models_mean_scores(api: TestClient, coalition_a: Coalition3) -> None:
    rows = api.get("/console/lineage", headers=OPERATOR)
    refused = api.get("/console/lineage")

    assert rows.status_code == 200 and refused.status_code == 401
    by_id = {m["id"]: m for m in rows.json()}
    detail = api.get(f"/models/{coalition_a.committed}", headers=OPERATOR).json()
    scores = [v["score_global"] for v in detail["votes"]]
    committed = by_id[coalition_a.committed]
    assert committed["votes"] == len(scores) == 2 and committed["state"] == "committed"
    assert [m["id"] for m in by_id.values() if m["head"]] == [coalition_a.deployed.client.head()]
    assert committed["score_global"] == pytest.approx(sum(scores) / len(scores))
    assert by_id[0]["votes"] == 0 and by_id[0]["score_global"] is None


def test_a_prediction_with_its_truth_is_kept_for_its_caller(api: TestClient, coalition_a: Coalition3) -> None:
    image, mask = scan_and_mask(coalition_a.deployed.folder / "data" / "global")
    path = f"/models/{coalition_a.committed}/predictions?threshold=0.3"

    made = api.post(path, headers=OPERATOR, files={"image": ("scan.png", image), "mask": ("scan-mask.png", mask)})

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["model_id"] == coalition_a.committed and body["image"] == "scan.png" and body["shape"] == [1, 32, 32]
    assert body["dims"] == 2 and body["depth"] == 1 and body["threshold"] == 0.3
    assert body["truth"] and all(b["label"] == "truth" for b in body["truth"])
    assert all(0 < b["probability"] <= 1 for b in body["boxes"])
    again = api.get(f"/predictions/{body['id']}", headers=OPERATOR)
    assert again.status_code == 200 and again.json() == body
    picture = api.get(f"/predictions/{body['id']}/overlay.png", headers=OPERATOR)
    assert picture.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(picture.content)).size == (512, 256)  # the truth panel beside the prediction
    no_slice = api.get(f"/predictions/{body['id']}/overlay.png?z=3", headers=OPERATOR)
    assert no_slice.status_code == 400 and "no slice 3" in no_slice.json()["message"]
    peer = coalition_a.deployed.accounts[1]
    other = f"/predictions/{body['id']}"
    assert api.get(other, headers=signed(api, peer, "GET", other)).status_code == 404  # not the peer's


def test_a_prediction_without_a_mask_has_no_truth(api: TestClient, coalition_a: Coalition3) -> None:
    image, _ = scan_and_mask(coalition_a.deployed.folder / "data" / "global")
    made = api.post(f"/models/{coalition_a.committed}/predictions", headers=OPERATOR, files={"image": ("a.png", image)})
    body = made.json()
    picture = api.get(f"/predictions/{body['id']}/overlay.png", headers=OPERATOR)
    assert made.status_code == 201 and body["truth"] is None
    assert Image.open(io.BytesIO(picture.content)).size == (256, 256)


GREY = np.zeros((32, 32), np.uint8)


@pytest.mark.parametrize(
    ("model", "files", "status", "message"),
    [
        ("head", {"image": ("notes.png", b"these are notes")}, 400, "cannot read image 'notes.png'"),
        ("head", {"image": ("notes.txt", b"these are notes")}, 400, "unsupported image type 'notes.txt'"),
        ("head", {"image": ("scan.png", b"")}, 400, "is empty"),
        ("head", {"picture": ("scan.png", png(GREY))}, 400, "field 'image'"),
        ("head", {"image": ("vol.nii", nifti((16, 16, 8)))}, 400, "(3D); the model expects 1 channel(s), 2D"),
        ("head", {"image": ("s.png", png(GREY)), "mask": ("m.png", png(np.zeros((16, 16), np.uint8)))}, 400, "mask"),
        ("head", {"image": ("s.png", png(GREY)), "mask": ("m.txt", b"x")}, 400, "unsupported image type 'm.txt'"),
        ("head", {"image": ("huge.png", b"\0" * (MAX_UPLOAD_BYTES + 1))}, 413, f"exceeds {MAX_UPLOAD_BYTES} bytes"),
        (999, {"image": ("scan.png", png(GREY))}, 404, "no model 999"),
    ],
)
def test_bad_input_is_a_4xx_naming_it_and_nothing_is_kept(
    api: TestClient, coalition_a: Coalition3, model: int | str, files: dict, status: int, message: str
) -> None:
    model_id = coalition_a.committed if model == "head" else model
    before = len(kept(api))

    response = api.post(f"/models/{model_id}/predictions", headers=OPERATOR, files=files)

    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert len(kept(api)) == before


def test_a_forgotten_prediction_is_404_saying_what_to_do(api: TestClient) -> None:
    response = api.get("/predictions/never-made/overlay.png", headers=OPERATOR)
    assert response.status_code == 404 and "upload the image again" in response.json()["message"]
