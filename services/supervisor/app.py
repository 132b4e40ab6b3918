"""The supervisor service (variant C): a thin FastAPI layer over `tclearn.he.supervisor.Supervisor`.

    GET  /health     liveness (unsigned)                                                 200
    GET  /context    the hash of the public context this supervisor decrypts for        200
    POST /decrypt    {context, model, vectors} -> {values}                             200 / 409 / 413 / 429
    POST /refresh    {context, model, vectors} -> the same values re-encrypted fresh    200 / 409 / 413 / 429
    POST /score      {context, model, vectors: [margins]} -> {accuracy, count}          200 / 409 / 413 / 429
    POST /measure    {context, model, vectors: weights} -> {bounds: [[norm, |bias|]...]} 200 / 409 / 413 / 429
    POST /aggregate  {parts: [{context, model, vectors}, ...]} -> {values} of their sum  200 / 400 / 409 / 413 / 429
    GET  /log        who asked for which model, how many values, when (auditors)       200

Every request but /health is signed by an active member for this supervisor (`tclearn.vault.signing`): 401
unsigned, forged or signed for another audience, 403 not a member. Ciphertexts made under another context are
refused with 409. Run it with `tclearn supervisor serve`, or `uvicorn --factory services.supervisor.app:app_from_env`
with `TCLEARN_SUPERVISOR_*` variables (`TCLEARN_SUPERVISOR_CONFIG` naming a TOML file; docs/deploy.md, "Settings").
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from services.common import LogLimit, error_responses, member_directory, service_app, signed_caller
from services.observability import metrics_registry
from services.supervisor.schemas import (
    AggregateIn,
    CiphertextMessage,
    ContextOut,
    Decrypted,
    Health,
    LogEntryOut,
    Measured,
    ScoreOut,
)
from tclearn.config import settings_from_env
from tclearn.errors import HEError, TclearnError, TooLargeError
from tclearn.he.config import SupervisorSettings
from tclearn.he.context import Ciphertexts
from tclearn.he.keys import load_secret
from tclearn.he.supervisor import Limits, Supervisor
from tclearn.state.db import Database
from tclearn.vault.audience import Audience, service_audience
from tclearn.vault.directory import MemberDirectory
from tclearn.vault.keys import key_password
from tclearn.vault.replay import ReplayStore
from tclearn.vault.replay_db import open_replay_store
from tclearn.vault.signing import EMPTY_SHA256, RequestVerifier

T = TypeVar("T")
M = TypeVar("M")
B = TypeVar("B", bound=BaseModel)


def _body_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The body is read as a stream (size limit, signature), then validated as `schema` (its nested models are
    the OpenAPI document's components)."""
    inline = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    inline.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline}}}}


def create_app(
    supervisor: Supervisor,
    directory: MemberDirectory,
    audience: Audience,
    *,
    max_skew_s: int = 300,
    replay: ReplayStore | None = None,
) -> FastAPI:
    """The supervisor service for the members of `directory`; requests must be signed for `audience`."""
    verifier = RequestVerifier(directory, audience, max_skew_s, replay=replay)
    app = service_app("tclearn supervisor")
    app.state.audience = audience
    requests = Counter(
        "tclearn_supervisor_requests",
        "Decrypt, refresh, score, measure and aggregate requests, by outcome (ok or the error code)",
        ["operation", "outcome"],
        registry=metrics_registry(app),
    )
    limit = supervisor.limits.max_request_bytes
    signed = error_responses(401, 403, 422)
    message_route: dict[str, Any] = {
        "responses": {**signed, **error_responses(400, 409, 413, 429)},
        "openapi_extra": _body_schema(CiphertextMessage),
    }

    async def signed_document(request: Request, schema: type[B]) -> tuple[str, B]:
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
            return account, schema.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise HEError(f"malformed ciphertext message: {problems}") from None

    async def signed_message(request: Request) -> tuple[str, Ciphertexts]:
        account, document = await signed_document(request, CiphertextMessage)
        return account, Ciphertexts.from_json(document.model_dump())

    async def signed_parts(request: Request) -> tuple[str, list[Ciphertexts]]:
        account, document = await signed_document(request, AggregateIn)
        return account, [Ciphertexts.from_json(part.model_dump()) for part in document.parts]

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok")

    @app.get("/context", responses=signed)
    def context(request: Request) -> ContextOut:
        signed_caller(verifier, request, EMPTY_SHA256)
        return ContextOut(context=supervisor.context_hash)

    async def answer(
        operation: str,
        request: Request,
        work: Callable[[str, M], T],
        read: Callable[[Request], Awaitable[tuple[str, M]]],
    ) -> T:
        """`work` on the signed request's ciphertexts, counted in `tclearn_supervisor_requests_total`."""
        try:
            account, message = await read(request)
            result = await run_in_threadpool(work, account, message)
        except TclearnError as exc:
            requests.labels(operation, exc.code).inc()
            raise
        except Exception:
            requests.labels(operation, "internal_error").inc()
            raise
        requests.labels(operation, "ok").inc()
        return result

    @app.post("/decrypt", **message_route)
    async def decrypt(request: Request) -> Decrypted:
        return Decrypted(values=await answer("decrypt", request, supervisor.decrypt, signed_message))

    @app.post("/refresh", **message_route)
    async def refresh(request: Request) -> CiphertextMessage:
        fresh = await answer("refresh", request, supervisor.refresh, signed_message)
        return CiphertextMessage.model_validate(fresh.to_json())

    @app.post("/score", **message_route)
    async def score(request: Request) -> ScoreOut:
        result = await answer("score", request, supervisor.score, signed_message)
        return ScoreOut(accuracy=result.accuracy, count=result.count)

    @app.post("/measure", **message_route)
    async def measure(request: Request) -> Measured:
        return Measured(bounds=await answer("measure", request, supervisor.measure, signed_message))

    aggregate_route = {**message_route, "openapi_extra": _body_schema(AggregateIn)}

    @app.post("/aggregate", **aggregate_route)
    async def aggregate(request: Request) -> Decrypted:
        return Decrypted(values=await answer("aggregate", request, supervisor.aggregate, signed_parts))

    @app.get("/log", responses=signed)
    def log(
        request: Request, account: str | None = None, model: str | None = None, limit: LogLimit = 1000
    ) -> list[LogEntryOut]:
        signed_caller(verifier, request, EMPTY_SHA256)
        return [LogEntryOut.model_validate(e.to_json()) for e in supervisor.log(account, model, limit)]

    return app


def app_for(settings: SupervisorSettings) -> FastAPI:
    """The service as `settings` describe it; the key password from `TCLEARN_KEY_PASSWORD` or a prompt."""
    he = load_secret(settings.key_file, key_password("Supervisor key password: "))
    limits = Limits(settings.max_request_bytes, settings.max_values, settings.requests_per_minute)
    supervisor = Supervisor(he, Database(settings.database), limits)
    directory = member_directory(settings.deployment, settings.members, __name__)
    audience = service_audience(settings.public_url, settings.server, settings.deployment)
    replay = open_replay_store(settings.replay_store)
    app = create_app(supervisor, directory, audience, max_skew_s=settings.max_skew_s, replay=replay)
    app.state.settings = settings
    return app


def app_from_env() -> FastAPI:
    """The service as `TCLEARN_SUPERVISOR_*` variables over the file in `TCLEARN_SUPERVISOR_CONFIG` describe it."""
    return app_for(settings_from_env(SupervisorSettings))
