"""Fuzzing the member, vault, supervisor and auditor OpenAPI documents with schemathesis: no 5xx ever, every
rejection a 4xx with a message. Requests go authenticated (operator or auditor token, signed requests) and
unauthenticated; examples are few per operation to keep the suite fast."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet

from services.auditor.app import create_app as create_auditor
from services.common import install_error_handlers
from services.supervisor.app import create_app as create_supervisor
from services.vault.app import create_app as create_vault
from tclearn.audit.follow import ChainFollower
from tclearn.audit.token import new_token
from tclearn.coalition.backend import tensors
from tclearn.errors import VaultUnavailable
from tclearn.he.keys import generate
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.ledger.chain import embedded_chain
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.signing import EMPTY_SHA256, sign_request
from tclearn.vault.store import FsspecStore
from tests.conftest import ACCOUNTS, deploy_coalition
from tests.services.conftest import Coalition3, member_client, operator_headers
from tests.vault.conftest import account

EXAMPLES = 12
FUZZ_AUDIENCE = Audience.of("http://fuzz.test:8700")  # what the services under fuzz call themselves
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
            body = _json_body(case)  # sent as these bytes, so that a signature can cover them
            extra = {} if body is None else {"data": body}
            response = case.call(headers=headers(case) if auth else {}, **extra)
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


def _json_body(case: schemathesis.Case) -> bytes | None:
    """The bytes `fuzz` sends as `case`'s JSON body (None: no JSON body, schemathesis sends what it has)."""
    if case.body is None or isinstance(case.body, NotSet):  # an optional body left out (POST /jobs/finetune)
        return None
    if case.media_type != "application/json" or case.method in ("GET", "HEAD"):
        return None
    return json.dumps(case.body).encode()


def _json_sha256(case: schemathesis.Case) -> str:
    body = _json_body(case)
    return EMPTY_SHA256 if body is None else hashlib.sha256(body).hexdigest()


def past_auth(seen: Counter[int]) -> int:
    return sum(n for code, n in seen.items() if code not in (401, 403))


def test_vault_openapi_fuzz() -> None:
    member = account(1)
    store = FsspecStore(f"memory://fuzz-{uuid.uuid4().hex}", max_bytes=1 << 16)
    db = Database("sqlite://")
    app = create_vault(store, db, StaticDirectory({member.address: None}), FUZZ_AUDIENCE, auditors=[member.address])

    def signed(case: schemathesis.Case) -> dict[str, str]:
        body = str(case.path_parameters.get("sha256", "")) if case.method == "PUT" else EMPTY_SHA256
        return sign_request(member, FUZZ_AUDIENCE, case.method, _signed_path(case), body)

    seen = fuzz(app, signed)
    assert seen[401] > 0 and past_auth(seen) > 0  # past auth too
    db.dispose()


def test_supervisor_openapi_fuzz() -> None:
    """Every operation has typed bodies (`services/supervisor/schemas.py`); signed POSTs reach the supervisor."""
    member = account(1)
    secret, _public = generate()
    supervisor = Supervisor(secret, Database("sqlite://"), Limits(max_request_bytes=1 << 16, requests_per_minute=10**6))
    app = create_supervisor(supervisor, StaticDirectory({member.address: None}), FUZZ_AUDIENCE)

    def signed(case: schemathesis.Case) -> dict[str, str]:
        return sign_request(member, FUZZ_AUDIENCE, case.method, _signed_path(case), _json_sha256(case))

    seen = fuzz(app, signed)
    assert seen[401] > 0 and seen[200] > 0
    assert seen[400] > 0  # a generated ciphertext message got past the signature to the supervisor's checks


def test_auditor_openapi_fuzz(tmp_path: Path) -> None:
    """The auditor over a coalition on the embedded chain: every operation typed, every one behind the token."""
    coalition = deploy_coalition(embedded_chain(ACCOUNTS), validators=2)
    follower = ChainFollower(coalition.client, Database(f"sqlite:///{tmp_path}/state.db"))
    token, digest = new_token()
    app = create_auditor(follower, FsspecStore(f"memory://fuzz-{uuid.uuid4().hex}"), token_sha256=digest)

    seen = fuzz(app, lambda _case: {"authorization": f"Bearer {token}"})
    assert seen[401] > 0 and seen[200] > 0 and seen[404] > 0


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
    app = create_vault(
        store, Database("sqlite://"), StaticDirectory({member.address: None}), FUZZ_AUDIENCE, auditors=[member.address]
    )
    path, within_path = f"/access-log?limit={limit}", "/access-log?limit=5"
    with TestClient(app) as client:
        response = client.get(path, headers=sign_request(member, FUZZ_AUDIENCE, "GET", path, EMPTY_SHA256))
        within = client.get(within_path, headers=sign_request(member, FUZZ_AUDIENCE, "GET", within_path))
    assert response.status_code == 422 and response.json()["code"] and "limit" in response.text
    assert within.status_code == 200
