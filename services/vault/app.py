"""The vault service: a thin FastAPI layer over `tclearn.vault` (store, signed requests, access log).

    PUT  /blobs/{sha256}      stream a blob in; the body must hash to the path    201 / 400 / 409 / 413
    GET  /blobs/{sha256}      stream a blob out (re-hashed while it is read)      200 / 404
    HEAD /blobs/{sha256}      its size                                            200 / 404
    GET  /keyrings/{sha256}   the keyring of wrapped data keys beside a blob      200 / 404
    POST /keyrings/{sha256}   merge wraps into it (grant a model to a new member) 200 / 404 / 409
    PUT  /ballots/{sha256}/{signer}  a validator's signed vote on a candidate, once  201 / 403 / 409 / 413
    GET  /ballots/{sha256}    the signed votes on a candidate, by signer (base64) 200
    GET  /access-log          who read and wrote what, for auditors only          200 / 403
    GET  /health              liveness                                            200

Every request but /health (and reads when `public_reads`) is signed for this vault (`tclearn.vault.signing`):
writes by active members (a ballot by its signer only), reads by members or the `auditors` of the settings, the
access log by auditors only.
Run it with `tclearn vault serve`, or `uvicorn --factory services.vault.app:app_from_env` with `TCLEARN_VAULT_*`
variables (`TCLEARN_VAULT_CONFIG` naming a TOML file; docs/deploy.md, "Settings").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterable

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from prometheus_client import Counter
from starlette.requests import ClientDisconnect

from services.common import LogLimit, member_directory, service_app, signed_caller
from services.observability import metrics_registry
from tclearn.config import settings_from_env
from tclearn.errors import AccessDenied, NotFoundError, TclearnError, TooLargeError
from tclearn.state.db import Database
from tclearn.vault.access_log import access_entries, record_access
from tclearn.vault.allocator import keep_blob_buffers
from tclearn.vault.audience import Audience, service_audience
from tclearn.vault.config import VaultSettings
from tclearn.vault.directory import MemberDirectory, checksum
from tclearn.vault.envelope import Keyring, add_wraps
from tclearn.vault.replay import ReplayStore
from tclearn.vault.replay_db import open_replay_store
from tclearn.vault.signing import ADDRESS_HEADER, EMPTY_SHA256, RequestVerifier
from tclearn.vault.store import CHUNK_SIZE, BlobStore, BlobWriter, FsspecStore, check_sha256, check_signer

ANONYMOUS = "anonymous"
MAX_KEYRING_BYTES = 1 << 20  # a wrap is ~300 bytes of JSON: room for thousands of members
MAX_BALLOT_BYTES = 16 << 10  # a signed vote is ~500 bytes of JSON


def _write_all(writer: BlobWriter, chunks: list[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)


async def small_body(request: Request, limit: int, what: str) -> bytes:
    """A request body of at most `limit` bytes (`TooLargeError` naming `what` beyond)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLargeError(f"{what} exceeds {limit} bytes", limit=limit)
    return bytes(body)


def create_app(
    store: BlobStore,
    db: Database,
    directory: MemberDirectory,
    audience: Audience,
    *,
    public_reads: bool = False,
    max_skew_s: int = 300,
    auditors: Iterable[str] = (),
    replay: ReplayStore | None = None,
) -> FastAPI:
    """The vault over `store`, logging to `db`, for the members of `directory`; requests must be signed for
    `audience` (this vault's URL and coalition)."""
    verifier = RequestVerifier(directory, audience, max_skew_s, replay=replay)
    auditor_set = frozenset(checksum(a) for a in auditors)
    keyring_lock, ballot_lock = asyncio.Lock(), asyncio.Lock()
    app = service_app("tclearn vault")
    stored_bytes = Counter("tclearn_vault_stored_bytes", "Blob bytes stored", registry=metrics_registry(app))
    served_bytes = Counter(
        "tclearn_vault_served_bytes", "Blob bytes served (GET /blobs)", registry=metrics_registry(app)
    )
    app.state.audience = audience

    def caller(request: Request, body_sha256: str, *, read: bool = False) -> str:
        if read and public_reads and ADDRESS_HEADER not in request.headers:
            return ANONYMOUS
        return signed_caller(verifier, request, body_sha256, auditors=auditor_set if read else frozenset())

    @app.put("/blobs/{sha256}", status_code=201)
    async def put_blob(sha256: str, request: Request) -> dict[str, object]:
        check_sha256(sha256)
        account = caller(request, sha256)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > store.max_bytes:
            raise TooLargeError(
                f"blob of {declared} bytes exceeds the vault size limit of {store.max_bytes} bytes",
                limit=store.max_bytes,
            )
        writer = await run_in_threadpool(store.writer, sha256)
        try:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in request.stream():
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= CHUNK_SIZE:
                    await run_in_threadpool(_write_all, writer, pending)
                    pending, pending_size = [], 0
            await run_in_threadpool(_write_all, writer, pending)
            stored = await run_in_threadpool(writer.commit)
        except ClientDisconnect:
            writer.abort()
            raise TclearnError(f"upload of {sha256} was interrupted; nothing was stored") from None
        except BaseException:
            writer.abort()
            raise
        await run_in_threadpool(record_access, db, account, "put", stored, writer.size)
        stored_bytes.inc(writer.size)
        return {"sha256": stored, "size": writer.size}

    def blob_size(sha256: str) -> int:
        size = store.size(check_sha256(sha256))
        if size is None:
            raise NotFoundError(f"the vault holds no blob {sha256}", sha256=sha256)
        return size

    @app.head("/blobs/{sha256}")
    def head_blob(sha256: str, request: Request) -> Response:
        caller(request, EMPTY_SHA256, read=True)
        return Response(headers={"content-length": str(blob_size(sha256))})

    @app.get("/blobs/{sha256}")
    def get_blob(sha256: str, request: Request) -> StreamingResponse:
        account = caller(request, EMPTY_SHA256, read=True)
        size = blob_size(sha256)
        chunks = store.iter_blob(sha256)
        record_access(db, account, "get", sha256, size)
        served_bytes.inc(size)
        return StreamingResponse(chunks, media_type="application/octet-stream", headers={"content-length": str(size)})

    @app.get("/keyrings/{sha256}")
    def get_keyring(sha256: str, request: Request) -> Response:
        account = caller(request, EMPTY_SHA256, read=True)
        document = store.read_keyring(check_sha256(sha256))
        if document is None:
            raise NotFoundError(f"the vault holds no keyring for {sha256}", sha256=sha256)
        record_access(db, account, "get-keyring", sha256, len(document))
        return Response(document, media_type="application/json")

    @app.post("/keyrings/{sha256}")
    async def post_keyring(sha256: str, request: Request) -> Response:
        check_sha256(sha256)
        body = await small_body(request, MAX_KEYRING_BYTES, "keyring")
        account = caller(request, hashlib.sha256(body).hexdigest())
        blob_size(sha256)
        incoming = Keyring.from_bytes(body, sha256)
        async with keyring_lock:
            merged = await run_in_threadpool(add_wraps, store, incoming)
        record_access(db, account, "add-wraps", sha256, len(body))
        return Response(merged.to_bytes(), media_type="application/json")

    @app.put("/ballots/{sha256}/{signer}", status_code=201)
    async def put_ballot(sha256: str, signer: str, request: Request) -> dict[str, str]:
        check_sha256(sha256)
        signer = check_signer(signer)
        body = await small_body(request, MAX_BALLOT_BYTES, "ballot")
        account = caller(request, hashlib.sha256(body).hexdigest())
        if account != signer:
            raise AccessDenied(
                f"{account} may not post a ballot for {signer}: a validator posts its own signed vote only",
                address=account,
            )
        async with ballot_lock:
            await run_in_threadpool(store.post_ballot, sha256, signer, body)
        record_access(db, account, "put-ballot", sha256, len(body))
        return {"sha256": sha256, "signer": signer}

    @app.get("/ballots/{sha256}")
    def get_ballots(sha256: str, request: Request) -> dict[str, str]:
        account = caller(request, EMPTY_SHA256, read=True)
        found = store.ballots(check_sha256(sha256))
        record_access(db, account, "get-ballots", sha256, sum(len(d) for d in found.values()))
        return {signer: base64.b64encode(document).decode() for signer, document in found.items()}

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness for supervisors and `tclearn coalition up`; no authentication, no data."""
        return {"status": "ok"}

    @app.get("/access-log")
    def access_log(
        request: Request, account: str | None = None, sha256: str | None = None, limit: LogLimit = 1000
    ) -> list[dict[str, object]]:
        auditor = signed_caller(verifier, request, EMPTY_SHA256, members=False)
        if auditor not in auditor_set:
            raise AccessDenied(
                f"{auditor} is not an auditor of this vault: the access log is for the addresses in its "
                "`auditors` setting only",
                address=auditor,
            )
        return [e.to_json() for e in access_entries(db, account=account, sha256=sha256, limit=limit)]

    return app


def app_for(settings: VaultSettings) -> FastAPI:
    """The service as `settings` describe it (see `VaultSettings`)."""
    keep_blob_buffers()
    directory = member_directory(settings.deployment, settings.members, __name__)
    app = create_app(
        FsspecStore(settings.store, settings.max_bytes, settings.storage_options),
        Database(settings.database),
        directory,
        service_audience(settings.public_url, settings.server, settings.deployment),
        public_reads=settings.public_reads,
        max_skew_s=settings.max_skew_s,
        auditors=settings.auditors,
        replay=open_replay_store(settings.replay_store),
    )
    app.state.settings = settings
    return app


def app_from_env() -> FastAPI:
    """The service as `TCLEARN_VAULT_*` variables over the file in `TCLEARN_VAULT_CONFIG` describe it."""
    return app_for(settings_from_env(VaultSettings))
