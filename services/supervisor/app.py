"""The supervisor service (variant C): a thin FastAPI layer over `tclearn.he.supervisor.Supervisor`.

    GET  /health     liveness (unsigned)                                                 200
    GET  /context    the hash of the public context this supervisor decrypts for        200
    POST /decrypt    {context, model, vectors} -> {values}                             200 / 409 / 413 / 429
    POST /refresh    {context, model, vectors} -> the same values re-encrypted fresh    200 / 409 / 413 / 429
    POST /score      {context, model, vectors: [margins]} -> {accuracy, count}          200 / 409 / 413 / 429
    GET  /log        who asked for which model, how many values, when (auditors)       200

Every request but /health is signed by an active member (`tclearn.vault.signing`): 401 unsigned or forged,
403 not a member. Ciphertexts made under another context are refused with 409. Run it with
`tclearn supervisor serve`, or `uvicorn --factory services.supervisor.app:app_from_env` with `TCLEARN_SUPERVISOR_*`
variables (`TCLEARN_SUPERVISOR_CONFIG` naming a TOML file; docs/deploy.md, "Settings").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter

from services.common import LogLimit, member_directory, service_app, signed_caller
from services.observability import metrics_registry
from tclearn.config import settings_from_env
from tclearn.errors import HEError, TclearnError, TooLargeError
from tclearn.he.config import SupervisorSettings
from tclearn.he.context import Ciphertexts
from tclearn.he.keys import load_secret
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.state.db import Database
from tclearn.vault.directory import MemberDirectory
from tclearn.vault.keys import key_password
from tclearn.vault.signing import EMPTY_SHA256, RequestVerifier

T = TypeVar("T")


def create_app(supervisor: Supervisor, directory: MemberDirectory, *, max_skew_s: int = 300) -> FastAPI:
    verifier = RequestVerifier(directory, max_skew_s)
    app = service_app("tclearn supervisor")
    requests = Counter(
        "tclearn_supervisor_requests",
        "Decrypt, refresh and score requests, by outcome (ok or the error code)",
        ["operation", "outcome"],
        registry=metrics_registry(app),
    )
    limit = supervisor.limits.max_request_bytes

    async def signed_message(request: Request) -> tuple[str, Ciphertexts]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            supervisor.check_size(int(declared))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise TooLargeError(f"request exceeds the supervisor limit of {limit} bytes", limit=limit)
        account = signed_caller(verifier, request, hashlib.sha256(body).hexdigest())
        try:
            document = json.loads(body)
        except ValueError:
            raise HEError("the request body is not JSON") from None
        return account, Ciphertexts.from_json(document)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/context")
    def context(request: Request) -> dict[str, str]:
        signed_caller(verifier, request, EMPTY_SHA256)
        return {"context": supervisor.context_hash}

    async def answer(operation: str, request: Request, work: Callable[[str, Ciphertexts], T]) -> T:
        """`work` on the signed request's ciphertexts, counted in `tclearn_supervisor_requests_total`."""
        try:
            account, message = await signed_message(request)
            result = await run_in_threadpool(work, account, message)
        except TclearnError as exc:
            requests.labels(operation, exc.code).inc()
            raise
        except Exception:
            requests.labels(operation, "internal_error").inc()
            raise
        requests.labels(operation, "ok").inc()
        return result

    @app.post("/decrypt")
    async def decrypt(request: Request) -> dict[str, object]:
        return {"values": await answer("decrypt", request, supervisor.decrypt)}

    @app.post("/refresh")
    async def refresh(request: Request) -> dict[str, object]:
        return (await answer("refresh", request, supervisor.refresh)).to_json()

    @app.post("/score")
    async def score(request: Request) -> dict[str, object]:
        result = await answer("score", request, supervisor.score)
        return {"accuracy": result.accuracy, "count": result.count}

    @app.get("/log")
    def log(
        request: Request, account: str | None = None, model: str | None = None, limit: LogLimit = 1000
    ) -> list[dict[str, object]]:
        signed_caller(verifier, request, EMPTY_SHA256)
        return [e.to_json() for e in supervisor.log(account, model, limit)]

    return app


def app_for(settings: SupervisorSettings) -> FastAPI:
    """The service as `settings` describe it; the key password from `TCLEARN_KEY_PASSWORD` or a prompt."""
    he = load_secret(settings.key_file, key_password("Supervisor key password: "))
    limits = Limits(settings.max_request_bytes, settings.max_values, settings.requests_per_minute)
    supervisor = Supervisor(he, Database(settings.database), limits)
    directory = member_directory(settings.deployment, settings.members, __name__)
    app = create_app(supervisor, directory, max_skew_s=settings.max_skew_s)
    app.state.settings = settings
    return app


def app_from_env() -> FastAPI:
    """The service as `TCLEARN_SUPERVISOR_*` variables over the file in `TCLEARN_SUPERVISOR_CONFIG` describe it."""
    return app_for(settings_from_env(SupervisorSettings))
