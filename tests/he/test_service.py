"""The supervisor over HTTP: signed members only, limits, context refusal, the audit log; and its key file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.supervisor.app import create_app
from tclearn.errors import (
    AccessDenied,
    AuthError,
    ConfigError,
    ContextMismatch,
    RateLimited,
    SupervisorRefused,
    TooLargeError,
)
from tclearn.he.client import HttpSupervisorClient
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.keys import load_secret, save_secret
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.state.db import Database
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.signing import EMPTY_SHA256, sign_request
from tests.he.conftest import Keys
from tests.vault.conftest import account, serve_app

MEMBER, OUTSIDER = account(1), account(99)


def serve(supervisor: Supervisor) -> Iterator[str]:
    with serve_app(
        lambda url: create_app(supervisor, StaticDirectory({MEMBER.address: None}), Audience.of(url))
    ) as url:
        yield url


@pytest.fixture
def url(keys: Keys) -> Iterator[str]:
    limits = Limits(max_request_bytes=800_000, max_values=100, requests_per_minute=5)
    yield from serve(Supervisor(keys.secret, Database("sqlite://"), limits))


def test_member_decrypts_scores_refreshes_and_every_request_is_logged(url: str, keys: Keys) -> None:
    client = HttpSupervisorClient(url, MEMBER.key)
    assert client.context() == keys.public.hash
    vector = keys.public.encrypt([1.5, -2.0, 0.25])
    message = Ciphertexts.of(keys.public, [vector], model="ab" * 32)
    assert np.allclose(client.decrypt(message)[0], [1.5, -2.0, 0.25], atol=1e-4)
    assert client.score(message).accuracy == pytest.approx(2 / 3) and client.score(message).count == 3
    (fresh,) = client.refresh(message).load(keys.secret)
    assert keys.public.level(fresh) == keys.public.params.levels
    log = client.log()
    assert [e["action"] for e in log] == ["refresh", "score", "score", "decrypt"]
    assert supervisor_requests(url) == {("decrypt", "ok"): 1, ("score", "ok"): 2, ("refresh", "ok"): 1}
    assert {(e["account"], e["model"], e["values"]) for e in log} == {(MEMBER.address, "ab" * 32, 3)}
    assert client.log(model="cd" * 32) == []


@pytest.fixture
def roomy(keys: Keys) -> Iterator[str]:
    """A supervisor with the default limits: two fresh ciphertexts fit in one request."""
    yield from serve(Supervisor(keys.secret, Database("sqlite://")))


def test_aggregates_sums_only_and_weights_are_measured_and_projected_over_http(roomy: str, keys: Keys) -> None:
    client = HttpSupervisorClient(roomy, MEMBER.key)
    parts = [Ciphertexts.of(keys.public, [keys.public.encrypt(v)], "scaling") for v in ([1.0, 2.0], [0.5, -1.0])]
    assert np.allclose(client.aggregate(parts)[0], [1.5, 1.0], atol=1e-4)
    with pytest.raises(SupervisorRefused, match="at least 2 sites' parts"):
        client.aggregate(parts[:1])  # one site's statistics are never decrypted alone
    weights = Ciphertexts.of(keys.public, [keys.public.encrypt([3.0, 4.0, -9.0])], "ab" * 32)
    ((norm, bias),) = client.measure(weights)
    assert norm == pytest.approx(5.0, abs=1e-3) and bias == pytest.approx(9.0, abs=1e-3)
    bounded = Ciphertexts(weights.context, weights.vectors, weights.model, ((2.0, 4.0),))
    (fresh,) = client.refresh(bounded).load(keys.secret)
    assert np.allclose(keys.secret.decrypt(fresh), [1.2, 1.6, -4.0], atol=1e-3)
    assert [e["action"] for e in client.log()] == ["refresh", "measure", "aggregate"]


def test_unsigned_and_outsiders_are_refused(url: str, keys: Keys) -> None:
    body = json.dumps(Ciphertexts.of(keys.public, [keys.public.encrypt([1.0])]).to_json())
    response = httpx.post(f"{url}/decrypt", content=body)
    assert response.status_code == 401 and "unsigned" in response.json()["message"]
    assert httpx.get(f"{url}/log").status_code == 401
    with pytest.raises(AccessDenied, match="not an active member"):
        HttpSupervisorClient(url, OUTSIDER.key).decrypt(Ciphertexts.from_json(json.loads(body)))
    signed_for_another_body = sign_request(MEMBER, Audience.of(url), "POST", "/decrypt", EMPTY_SHA256)
    response = httpx.post(f"{url}/decrypt", content=body, headers=signed_for_another_body)
    assert response.status_code == 401 and "signature does not match" in response.json()["message"]
    for_another_supervisor = sign_request(MEMBER, Audience.of("http://supervisor-2.test:8710"), "GET", "/context")
    response = httpx.get(f"{url}/context", headers=for_another_supervisor)
    assert response.status_code == 401
    assert response.json()["message"].startswith("audience mismatch: the request was signed for http://supervisor-2")
    with pytest.raises(AuthError, match=r"audience mismatch.*chain 5"):
        HttpSupervisorClient(url, MEMBER.key, coalition=CoalitionId(5)).context()


def test_limits_and_foreign_context(url: str, keys: Keys, other_secret: HEContext) -> None:
    client = HttpSupervisorClient(url, MEMBER.key)
    with pytest.raises(TooLargeError, match="800000 bytes"):  # two fresh ciphertexts: ~2 x 590 kB as JSON
        client.decrypt(Ciphertexts.of(keys.public, [keys.public.encrypt([1.0])] * 2))
    with pytest.raises(TooLargeError, match="at most 100"):
        client.decrypt(Ciphertexts.of(keys.public, [keys.public.encrypt(np.ones(101))]))
    with pytest.raises(ContextMismatch, match="made under context"):
        client.decrypt(Ciphertexts.of(other_secret, [other_secret.encrypt([1.0])]))
    response = httpx.post(f"{url}/decrypt", content=b"{}", headers={})
    assert response.status_code == 401
    one = Ciphertexts.of(keys.public, [keys.public.encrypt([1.0])])
    for _ in range(3):  # requests 3 to 5 this minute (the refused ones that reached the supervisor count too)
        client.decrypt(one)
    with pytest.raises(RateLimited, match="limit 5"):
        client.decrypt(one)
    assert [e["action"] for e in client.log()] == ["decrypt"] * 3
    assert supervisor_requests(url) == {
        ("decrypt", "ok"): 3,
        ("decrypt", "too_large"): 2,
        ("decrypt", "context_mismatch"): 1,
        ("decrypt", "auth_error"): 1,
        ("decrypt", "rate_limited"): 1,
    }


def supervisor_requests(url: str) -> dict[tuple[str, str], float]:
    """`tclearn_supervisor_requests_total` from the service's /metrics, by (operation, outcome)."""
    return {
        (sample.labels["operation"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
        if sample.name == "tclearn_supervisor_requests_total"
    }


def test_secret_key_file_is_encrypted_at_rest(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "ckks.key"
    save_secret(path, keys.secret, b"correct horse")
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_secret(path, b"correct horse")
    assert loaded.hash == keys.secret.hash and loaded.can_decrypt
    assert loaded.decrypt(keys.public.encrypt([3.0]))[0] == pytest.approx(3.0, abs=1e-4)
    with pytest.raises(AuthError, match="wrong password"):
        load_secret(path, b"wrong")
    with pytest.raises(ConfigError, match="already exists"):
        save_secret(path, keys.secret, b"x")
    with pytest.raises(ConfigError, match="secret key"):
        save_secret(tmp_path / "pub.key", keys.public, b"x")
