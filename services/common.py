"""What every tclearn service shares: TclearnError -> JSON error responses, signed callers, the members."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tclearn.errors import TclearnError
from tclearn.ledger.directory import chain_directory
from tclearn.vault.directory import MemberDirectory, StaticDirectory
from tclearn.vault.signing import RequestVerifier


def install_error_handler(app: FastAPI) -> None:
    """Every `TclearnError` becomes `{code, message, ...}` with its HTTP status (4xx for user mistakes)."""

    @app.exception_handler(TclearnError)
    async def tclearn_error(_request: Request, exc: TclearnError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)


def signed_caller(verifier: RequestVerifier, request: Request, body_sha256: str) -> str:
    """The active member that signed `request` (401 unsigned or forged, 403 not a member)."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return verifier.verify(request.method, path, request.headers, body_sha256)


def member_directory(deployment: str | None, members: str | None, service: str) -> MemberDirectory:
    """Members from the Coalition contract (deployment file), else a JSON member file, else nobody."""
    if deployment:
        return chain_directory(Path(deployment))
    if members:
        return StaticDirectory.from_file(members)
    logging.getLogger(service).warning("no deployment or member file given: every signed request will be refused (403)")
    return StaticDirectory({})
