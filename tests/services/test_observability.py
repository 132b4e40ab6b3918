"""What every service reports about itself (`services.observability`, `services.docs`, `tclearn.logs`), on the vault
service served by uvicorn: request ids, the HTTP and vault metrics on /metrics, JSON log lines carrying the request
id (uvicorn's access lines included), and a /docs page that loads nothing from elsewhere."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.common import service_app
from services.observability import SANE_ID, request_id
from services.vault.app import create_app
from tclearn.logs import setup_logging
from tclearn.state.db import Database
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.http import HttpStore
from tclearn.vault.store import FsspecStore
from tests.vault.conftest import account, free_port, serve_app

MEMBER = account(1)
LATENCY = "tclearn_http_request_duration_seconds"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FastAPI]:
    db = Database(f"sqlite:///{tmp_path}/access.db")
    audience = Audience.of(f"http://127.0.0.1:{free_port()}")  # where `serve` will serve it
    app = create_app(FsspecStore(f"file://{tmp_path}/store"), db, StaticDirectory({MEMBER.address: None}), audience)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug, not a user's mistake")

    yield app
    db.dispose()


def serve(app: FastAPI) -> AbstractContextManager[str]:
    """`app` under uvicorn on loopback at the URL its requests are signed for (its audience), its loggers left to
    `setup_logging` as the serve commands leave them."""
    return serve_app(app, port=urlsplit(app.state.audience.url).port, log_config=None, log_level="info")


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Logging as `--log-format json` sets it up, into a buffer; the test process' logging restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def samples(text: str) -> dict[str, float]:
    """`name{label=value,...}` -> value, labels sorted."""
    return {
        sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("trace-42", True), ("a.b:c_d-0", True), ("x" * 128, True), ("x" * 129, False), ("a b", False), ("", False)],
)
def test_a_sane_incoming_request_id_is_kept_and_any_other_replaced(incoming: str, kept: bool) -> None:
    made = request_id(incoming)

    assert (made == incoming) is kept
    assert SANE_ID.fullmatch(made)
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_every_response_carries_the_request_id_and_unset_ids_are_fresh(vault: FastAPI) -> None:
    client = TestClient(vault)

    echoed = client.get("/health", headers={"x-request-id": "trace-42"})
    refused = client.get("/access-log", headers={"x-request-id": "<script>"})  # unsigned: 401, still tagged
    fresh = [client.get("/health").headers["x-request-id"] for _ in range(2)]

    assert echoed.headers["x-request-id"] == "trace-42"
    assert refused.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    assert fresh[0] != fresh[1]


def test_metrics_count_requests_by_route_template_status_and_bytes(vault: FastAPI) -> None:
    blob = b"observable bytes" * 1000
    with serve(vault) as url:
        store = HttpStore(url, MEMBER.key)
        sha = store.put_stream(iter([blob]))
        assert b"".join(store.iter_blob(sha)) == blob
        assert httpx.get(f"{url}/blobs/{'0' * 64}").status_code == 401  # unsigned
        assert httpx.get(f"{url}/no/such/path").status_code == 404
        store.close()
        text = httpx.get(f"{url}/metrics").text

    metrics = samples(text)
    blob_route = "route=/blobs/{sha256}"
    assert metrics[f"{LATENCY}_count{{method=PUT,{blob_route},status=201}}"] == 1
    assert metrics[f"{LATENCY}_count{{method=GET,{blob_route},status=200}}"] == 1
    assert metrics[f"{LATENCY}_count{{method=GET,{blob_route},status=401}}"] == 1
    assert metrics[f"{LATENCY}_count{{method=GET,route=unmatched,status=404}}"] == 1
    assert not [name for name in metrics if sha in name or "0000000000" in name]  # templates, never raw paths
    assert metrics[f"tclearn_http_request_bytes_total{{method=PUT,{blob_route}}}"] == len(blob)
    assert metrics[f"tclearn_http_response_bytes_total{{method=GET,{blob_route}}}"] >= len(blob)
    assert metrics["tclearn_vault_stored_bytes_total{}"] == len(blob)
    assert metrics["tclearn_vault_served_bytes_total{}"] == len(blob)


def test_odd_methods_and_unknown_paths_do_not_grow_the_series(vault: FastAPI) -> None:
    client = TestClient(vault)
    for index in range(5):
        client.request(f"BREW{index}", "/health")
        client.get(f"/random/{index}")

    metrics = samples(client.get("/metrics").text)

    latency = {name for name in metrics if name.startswith(f"{LATENCY}_count")}
    assert latency == {
        f"{LATENCY}_count{{method=OTHER,route=/health,status=405}}",
        f"{LATENCY}_count{{method=GET,route=unmatched,status=404}}",
    }
    assert metrics[f"{LATENCY}_count{{method=OTHER,route=/health,status=405}}"] == 5


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first, second = service_app("first"), service_app("second")

    TestClient(first).get("/metrics")

    assert (
        f'{LATENCY}_count{{method="GET",route="/metrics",status="200"}} 1.0' in TestClient(first).get("/metrics").text
    )
    assert f"{LATENCY}_count{{" not in TestClient(second).get("/metrics").text


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_lines_carry_the_id_of_their_request_access_lines_included(
    vault: FastAPI, logged: io.StringIO
) -> None:
    with serve(vault) as url:
        ok = httpx.get(f"{url}/health", headers={"x-request-id": "trace-42"})
        boom = httpx.get(f"{url}/boom")

    lines = log_lines(logged)
    assert ok.status_code == 200 and boom.status_code == 500
    assert all(set(line) >= {"time", "level", "logger", "message", "request_id"} for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [(a["request_id"], "GET /health" in a["message"]) for a in access][:1] == [("trace-42", True)]
    rid = boom.headers["x-request-id"]
    assert boom.json()["request_id"] == rid  # the caller can quote it; the operator finds the traceback
    errors = [line for line in lines if line["level"] == "error"]  # the handler's, and uvicorn's own
    assert errors and all(e["request_id"] == rid and "RuntimeError: a bug" in e["exception"] for e in errors)
    assert "services.common" in {e["logger"] for e in errors}
    assert any(a["request_id"] == rid and "/boom" in a["message"] for a in access)
    server = [line for line in lines if line["logger"] == "uvicorn.error" and line["level"] == "info"]
    assert server and all(line["request_id"] is None for line in server)  # starting, stopping: no request's


def test_text_log_lines_show_the_request_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("debug", "text", stream)
        logging.getLogger("tclearn.test").debug("outside a request")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    assert re.search(r" DEBUG tclearn\.test \[-\]: outside a request$", stream.getvalue().strip())


def test_the_docs_page_loads_only_assets_this_service_serves(vault: FastAPI) -> None:
    client = TestClient(vault)

    page = client.get("/docs")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
    linked = {a or b for a, b in urls}

    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"} <= linked
    for url in linked:
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 1000, url
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not offered
    assert "/docs" not in client.get("/openapi.json").json()["paths"]
