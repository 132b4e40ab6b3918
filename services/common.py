"""What every tclearn service shares: the app itself (`service_app`), errors mapped to HTTP in one place,
signed-request callers, serving, the pages' shared static files and their CSP.

Every error response is JSON `{"code": ..., "message": ..., ...details}`: a `TclearnError` gives its own
code, HTTP status and details; FastAPI's request validation gives 422 `invalid_request` naming each bad
field; routing errors (unknown path, wrong method) keep their status with code `http_error`; anything
unexpected is a 500 `internal_error` whose detail goes to the service log, not to the caller (who gets the
request id to quote).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException

from services.docs import install_docs
from services.observability import HEADER, install_observability
from tclearn.errors import TclearnError
from tclearn.ledger.directory import chain_directory
from tclearn.logs import REQUEST_ID
from tclearn.vault.directory import MemberDirectory, StaticDirectory
from tclearn.vault.signing import RequestVerifier

log = logging.getLogger(__name__)


SHARED_STATIC = Path(__file__).parent / "static"
# A service page loads nothing from elsewhere, runs no inline script and sends data only to its service; pictures
# fetched with the token are shown from blob: URLs.
PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"

MAX_LOG_ENTRIES = 100_000
LogLimit = Annotated[int, Query(ge=1, le=MAX_LOG_ENTRIES, description="the most entries to return, newest first")]
"""`?limit=` of every log endpoint: bounded, so that no request asks the database for more than it can count."""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["code", "message"],
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the JSON error body for `statuses`."""
    return {
        status: {"description": "error", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in statuses
    }


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def install_error_handlers(app: FastAPI) -> None:
    """Maps every error a route can raise to the one JSON error shape (see the module docstring)."""

    @app.exception_handler(TclearnError)
    async def tclearn_error(_request: Request, exc: TclearnError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": _field(e.get("loc", ())), "problem": str(e.get("msg", ""))} for e in exc.errors()]
        message = "invalid request: " + "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return JSONResponse({"code": "invalid_request", "message": message, "problems": problems}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"code": "http_error", "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        body = {"code": "internal_error", "message": "internal error; the service log has the details"}
        rid = REQUEST_ID.get()  # this handler answers outside the middleware that sets the header
        if rid is None:  # an app without `install_observability`
            return JSONResponse(body, status_code=500)
        return JSONResponse({**body, "request_id": rid}, status_code=500, headers={HEADER: rid})


def service_app(title: str, *, registry: CollectorRegistry | None = None, **options: Any) -> FastAPI:
    """A service's app with what every service has: the JSON errors above, request ids and `/metrics` over
    `registry` (`services.observability`), and `/docs` served offline (`services.docs`)."""
    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None, **options)
    install_error_handlers(app)
    install_observability(app, registry)
    install_docs(app)
    return app


def mount_shared_static(app: FastAPI) -> None:
    """The pages' shared script and style (`services/static`: DOM helpers, the bearer token) under /shared."""
    app.mount("/shared", StaticFiles(directory=SHARED_STATIC), name="shared")


def page(index: Path) -> FileResponse:
    """A service page's HTML under the strict `PAGE_CSP`."""
    return FileResponse(index, headers={"content-security-policy": PAGE_CSP})


def signed_caller(
    verifier: RequestVerifier,
    request: Request,
    body_sha256: str,
    *,
    auditors: Collection[str] = (),
    members: bool = True,
) -> str:
    """The address that signed `request` (method, path with query, body hash) for this service: an active member
    or one of `auditors` (any signer with `members=False`: the route decides); 401/403 otherwise."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not members:
        return verifier.authenticate(request.method, path, request.headers, body_sha256)
    return verifier.verify(request.method, path, request.headers, body_sha256, auditors=auditors)


def member_directory(deployment: str | None, members: str | None, service: str) -> MemberDirectory:
    """Members from the Coalition contract (deployment file), else a JSON member file, else nobody."""
    if deployment:
        return chain_directory(Path(deployment))
    if members:
        return StaticDirectory.from_file(members)
    logging.getLogger(service).warning("no deployment or member file given: every signed request will be refused (403)")
    return StaticDirectory({})
