"""Fuzzing the member and vault OpenAPI documents with schemathesis: no 5xx ever, every rejection a 4xx with a
message. Requests go authenticated (operator token, signed requests) and unauthenticated; examples are few per
operation to keep the suite fast."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import install_error_handlers
from services.vault.app import create_app as create_vault
from tclearn.coalition.backend import tensors
from tclearn.errors import VaultUnavailable
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.signing import EMPTY_SHA256, sign_request
from tclearn.vault.store import FsspecStore
from tests.services.conftest import Coalition3, member_client, operator_headers
from tests.vault.conftest import account

EXAMPLES = 12
Headers = Callable[[schemathesis.Case], dict[str, str]]


def fuzz(app: FastAPI, headers: Headers, examples: int = EXAMPLES) -> Counter[int]:
    """Calls every operation of `app`'s OpenAPI with generated requests; returns the status codes seen."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here

        @given(case=operation.as_strategy(), auth=st.booleans())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case, auth: bool) -> None:
            response = case.call(headers=headers(case) if auth else {})
            seen[response.status_code] += 1
            where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
            assert response.status_code < 500, where
            if response.status_code >= 400 and case.method != "HEAD":  # HEAD answers carry no body
                body = response.json()
                assert isinstance(body.get("message"), str) and body["message"] and body.get("code"), where

        check()
    return seen


def _signed_path(case: schemathesis.Case) -> str:
    url = httpx.URL("http://fuzz" + case.formatted_path, params=case.query or None)
    return unquote(url.path) + (f"?{url.query.decode()}" if url.query else "")


def test_vault_openapi_fuzz() -> None:
    member = account(1)
    store = FsspecStore(f"memory://fuzz-{uuid.uuid4().hex}", max_bytes=1 << 16)
    db = Database("sqlite://")
    app = create_vault(store, db, StaticDirectory({member.address: None}))

    def signed(case: schemathesis.Case) -> dict[str, str]:
        body = str(case.path_parameters.get("sha256", "")) if case.method == "PUT" else EMPTY_SHA256
        return sign_request(member, case.method, _signed_path(case), body)

    seen = fuzz(app, signed)
    assert seen[401] > 0 and sum(n for code, n in seen.items() if code not in (401, 403)) > 0  # past auth too
    db.dispose()


def test_member_openapi_fuzz(coalition_a: Coalition3) -> None:
    site = coalition_a.sites[0]  # another seed: a fuzzed training job must not submit the other tests' increment
    training = dataclasses.replace(tensors(site.coalition.backend, "the fuzz").training, seed=1234)
    fuzzed = Site(site.config, site.coalition.trained_with(training), site.hospital)
    with member_client(fuzzed) as client:
        app = client.app
        assert isinstance(app, FastAPI)
        seen = fuzz(app, lambda _case: operator_headers())
        app.state.runner.shutdown()  # a fuzzed POST /jobs/train may still be training
    assert seen[401] > 0 and seen[200] > 0


def test_the_fuzz_catches_a_5xx_and_the_error_body_hides_a_bug() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    def down() -> None:
        raise VaultUnavailable("the vault is down")

    with pytest.raises(AssertionError, match="-> 502"):
        fuzz(app, lambda _case: {}, examples=3)

    @app.get("/boom/{n}")
    def boom(n: int) -> dict[str, int]:
        return {"n": 1 // (n - n)}

    answer = TestClient(app, raise_server_exceptions=False).get("/boom/1")
    assert answer.status_code == 500
    assert answer.json() == {"code": "internal_error", "message": "internal error; the service log has the details"}


@pytest.mark.parametrize("limit", ["9223372036854775808", "0", "-1"])
def test_a_log_limit_out_of_range_is_a_4xx_not_a_5xx(limit: str) -> None:
    """Found by the fuzz: `?limit=2**63` reached SQLite and overflowed (500)."""
    member = account(1)
    store = FsspecStore(f"memory://fuzz-{uuid.uuid4().hex}")
    app = create_vault(store, Database("sqlite://"), StaticDirectory({member.address: None}))
    path = f"/access-log?limit={limit}"
    with TestClient(app) as client:
        response = client.get(path, headers=sign_request(member, "GET", path, EMPTY_SHA256))
        within = client.get(
            "/access-log?limit=5", headers=sign_request(member, "GET", "/access-log?limit=5", EMPTY_SHA256)
        )
    assert response.status_code == 422 and response.json()["code"] and "limit" in response.text
    assert within.status_code == 200
