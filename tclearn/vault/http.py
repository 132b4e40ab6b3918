"""`HttpStore`: the `BlobStore` interface over a vault service, every request signed (`signing.py`).

Uploads stream: with a known address the bytes go straight to `PUT /blobs/{sha256}`; without one they
are first spooled to a temporary file while hashing (the address must be in the URL before the body).
Downloads stream and are re-hashed here, whatever the server did.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import urlencode

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tclearn.errors import IntegrityError, TclearnError, VaultUnavailable
from tclearn.vault.audience import NO_COALITION, Audience, CoalitionId
from tclearn.vault.signing import EMPTY_SHA256, sign_request
from tclearn.vault.store import (
    CHUNK_SIZE,
    DEFAULT_MAX_BYTES,
    BlobStore,
    BlobWriter,
    check_sha256,
    check_signer,
    verified,
)


def _error_classes(root: type[TclearnError]) -> dict[str, type[TclearnError]]:
    found = {root.code: root}
    for sub in root.__subclasses__():
        found.update(_error_classes(sub))
    return found


def error_from_response(response: httpx.Response) -> TclearnError:
    """The `TclearnError` a vault error response describes (same class, message and details)."""
    try:
        body = response.json()
        code, message = body.pop("code"), body.pop("message")
    except (ValueError, KeyError, AttributeError):
        return TclearnError(f"vault answered HTTP {response.status_code}: {response.text[:200]}")
    cls = _error_classes(TclearnError).get(code, TclearnError)
    try:
        return cls(message, **body)
    except TypeError:
        return TclearnError(message, **body)


class _SpoolWriter(BlobWriter):
    """Buffers to a temporary file, then uploads it once its hash is known."""

    def __init__(self, store: HttpStore, expected: str | None) -> None:
        super().__init__(expected, store.max_bytes)
        self._store = store
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by commit/abort

    def _write(self, chunk: bytes | memoryview) -> None:
        self._file.write(chunk)

    def _publish(self, sha256: str) -> None:
        try:
            self._file.seek(0)
            self._store.upload(iter(lambda: self._file.read(CHUNK_SIZE), b""), sha256, self.size)
        finally:
            self.abort()

    def _discard(self) -> None:
        self._file.close()


class HttpStore(BlobStore):
    """A vault service at `base_url`, as `private_key`'s account (None: unsigned, public reads only); requests
    are signed for that URL and `coalition` (`audience.py`)."""

    def __init__(
        self,
        base_url: str,
        private_key: str | bytes | None,
        *,
        coalition: CoalitionId = NO_COALITION,
        timeout: float = 60.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.audience = Audience.of(self.base_url, coalition)
        self.account: LocalAccount | None = None if private_key is None else Account.from_key(private_key)
        self.max_bytes = max_bytes
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.client.close()

    def _headers(self, method: str, path: str, body_sha256: str = EMPTY_SHA256) -> dict[str, str]:
        return {} if self.account is None else sign_request(self.account, self.audience, method, path, body_sha256)

    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """One request; transport failures become `VaultUnavailable` naming the vault."""
        try:
            return self.client.send(self.client.build_request(method, path, **kwargs), stream=stream)
        except httpx.TransportError as exc:
            raise VaultUnavailable(
                f"{method} {self.base_url}{path} failed: {exc.__class__.__name__}: {exc}", url=self.base_url
            ) from None

    def _send(self, method: str, path: str, body_sha256: str = EMPTY_SHA256, **kwargs: Any) -> httpx.Response:
        response = self._request(method, path, headers=self._headers(method, path, body_sha256), **kwargs)
        if response.status_code >= 400 and not (method == "HEAD" and response.status_code == 404):
            raise error_from_response(response)
        return response

    def upload(self, chunks: Iterable[bytes], sha256: str, size: int | None = None) -> str:
        """Stream `chunks` to `PUT /blobs/{sha256}`; the server checks the hash."""
        path = f"/blobs/{check_sha256(sha256)}"
        headers = {"content-length": str(size)} if size is not None else {}
        request_headers = {**self._headers("PUT", path, sha256), **headers}
        response = self._request("PUT", path, content=chunks, headers=request_headers)
        if response.status_code >= 400:
            raise error_from_response(response)
        return str(response.json()["sha256"])

    def put_stream(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        if expected is None:
            return super().put_stream(chunks, expected)
        return self.upload(chunks, expected)

    def put(self, data: bytes, expected: str | None = None) -> str:
        return self.upload([data], expected or hashlib.sha256(data).hexdigest(), len(data))

    def writer(self, expected: str | None = None) -> BlobWriter:
        return _SpoolWriter(self, expected)

    def size(self, sha256: str) -> int | None:
        response = self._send("HEAD", f"/blobs/{check_sha256(sha256)}")
        return None if response.status_code == 404 else int(response.headers["content-length"])

    def iter_blob(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        path = f"/blobs/{check_sha256(sha256)}"
        response = self._request("GET", path, headers=self._headers("GET", path), stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise error_from_response(response)
        return verified(_stream(response, sha256, chunk_size), sha256)

    def read_keyring(self, sha256: str) -> bytes | None:
        path = f"/keyrings/{check_sha256(sha256)}"
        response = self._request("GET", path, headers=self._headers("GET", path))
        if response.status_code == 404 and response.json().get("code") == "not_found":
            return None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.content

    def write_keyring(self, sha256: str, document: bytes) -> None:
        """The service merges `document` into the keyring it holds (see `envelope.add_wraps`)."""
        self._send(
            "POST",
            f"/keyrings/{check_sha256(sha256)}",
            hashlib.sha256(document).hexdigest(),
            content=document,
        )

    def post_ballot(self, model_hash: str, signer: str, document: bytes) -> None:
        """`PUT /ballots/{model_hash}/{signer}`: the service takes it from `signer` itself only."""
        self._send(
            "PUT",
            f"/ballots/{check_sha256(model_hash)}/{check_signer(signer)}",
            hashlib.sha256(document).hexdigest(),
            content=document,
        )

    def ballots(self, model_hash: str) -> dict[str, bytes]:
        answer: dict[str, str] = self._send("GET", f"/ballots/{check_sha256(model_hash)}").json()
        return {signer: base64.b64decode(document) for signer, document in answer.items()}

    def access_log(
        self, account: str | None = None, sha256: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in {"account": account, "sha256": sha256, "limit": limit}.items() if v is not None}
        entries: list[dict[str, Any]] = self._send("GET", f"/access-log?{urlencode(query)}").json()
        return entries


def _stream(response: httpx.Response, sha256: str, chunk_size: int) -> Iterator[bytes]:
    with contextlib.closing(response):
        try:
            yield from response.iter_bytes(chunk_size)
        except httpx.HTTPError as exc:
            raise IntegrityError(
                f"download of blob {sha256} broke off before its end ({exc.__class__.__name__}): "
                "the server found it corrupt or the connection failed",
                sha256=sha256,
            ) from None
