"""Content-addressed blob storage: the `BlobStore` interface and its fsspec implementation.

A blob is named by the lowercase hex sha256 of its bytes. Writes stream through a `BlobWriter` that
hashes as it goes and publishes only when the hash matches: on a disk a temporary file renamed into place,
on S3 a multipart upload completed only then. An interrupted or refused write leaves nothing behind.
Reads stream too and re-hash: the last chunk is followed by an `IntegrityError` naming the hash when the
stored bytes no longer match their name.
Beside every blob the store may keep a keyring (small JSON bytes, see `envelope.py`), and the ballot box of a
candidate model: one signed vote document per validator (`ballots/<model hash>/<signer>.json`, written once; see
`tclearn.coalition.ballots`).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fsspec
from eth_utils import is_address, to_checksum_address

from tclearn.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    StorageError,
    TooLargeError,
)

CHUNK_SIZE = 1 << 20
DEFAULT_MAX_BYTES = 2 << 30
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Object stores publish an object whole on its last PUT; only S3 (s3fs) is tested here.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a"})
OBJECT_PART_BYTES = 8 << 20  # S3: one multipart part (at least 5 MiB), what an upload buffers and a read fetches
_TRANSPORT_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp"})


def check_sha256(sha256: str) -> str:
    """Return `sha256` if it is 64 lowercase hex digits, else raise naming the bad value."""
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise IntegrityError(f"invalid sha256 {sha256!r}: expected 64 lowercase hex digits", sha256=sha256)
    return sha256


def check_signer(signer: str) -> str:
    """`signer` as a checksummed address (a ballot's file name), else `IntegrityError` naming the bad value."""
    if not isinstance(signer, str) or not is_address(signer):
        raise IntegrityError(f"invalid ballot signer {signer!r}: expected an Ethereum address")
    return str(to_checksum_address(signer))


class BackgroundSha256:
    """sha256 computed on a helper thread, so hashing overlaps disk, network and AES work.

    hashlib releases the GIL while it hashes large buffers; a bounded queue keeps at most a few chunks
    in flight. Chunks must not be mutated after `update` (bytes are immutable; views are copied).
    """

    def __init__(self, depth: int = 4) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="vault-sha256", daemon=True)
        self._thread.start()
        self._result: str | None = None

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes | memoryview) -> None:
        self._queue.put(chunk if isinstance(chunk, bytes) else bytes(chunk))

    def hexdigest(self) -> str:
        if self._result is None:
            self._queue.put(None)
            self._thread.join()
            self._result = self._digest.hexdigest()
        return self._result

    def close(self) -> None:
        """Stop the helper thread without a result (an aborted read or write)."""
        if self._result is None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def verified(chunks: Iterable[bytes], sha256: str) -> Iterator[bytes]:
    """Yield `chunks` unchanged, then raise `IntegrityError` if their sha256 is not `sha256`."""
    digest = BackgroundSha256()
    try:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
        actual = digest.hexdigest()
    finally:
        digest.close()
    if actual != sha256:
        raise IntegrityError(f"blob {sha256} is corrupt: its bytes hash to {actual}", sha256=sha256)


class BlobWriter(ABC):
    """One streaming write; `commit()` publishes it, `abort()` (or an exception) drops it."""

    def __init__(self, expected: str | None, max_bytes: int) -> None:
        self.expected = check_sha256(expected) if expected is not None else None
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = BackgroundSha256()

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise TooLargeError(f"blob exceeds the vault size limit of {self.max_bytes} bytes", limit=self.max_bytes)
        self._digest.update(chunk)
        self._write(chunk)

    def commit(self) -> str:
        """Check the hash, publish the blob under it and return it."""
        actual = self._digest.hexdigest()
        if self.expected is not None and actual != self.expected:
            self.abort()
            raise IntegrityError(
                f"body hashes to {actual}, not to the address {self.expected}",
                sha256=self.expected,
                actual=actual,
            )
        self._publish(actual)
        return actual

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    @abstractmethod
    def _write(self, chunk: bytes | memoryview) -> None: ...

    @abstractmethod
    def _publish(self, sha256: str) -> None: ...

    def abort(self) -> None:
        """Drop whatever was written; safe to call twice."""
        self._digest.close()
        self._discard()

    @abstractmethod
    def _discard(self) -> None: ...


class BlobStore(ABC):
    """Blobs addressed by sha256, plus one keyring document beside each blob."""

    max_bytes: int = DEFAULT_MAX_BYTES

    @abstractmethod
    def writer(self, expected: str | None = None) -> BlobWriter:
        """A streaming writer; `expected` is the address the bytes must hash to."""

    @abstractmethod
    def iter_blob(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream a blob, re-hashing it; raises `NotFoundError` before the first chunk if absent."""

    @abstractmethod
    def size(self, sha256: str) -> int | None:
        """Size in bytes, or None when the store does not hold the blob."""

    @abstractmethod
    def read_keyring(self, sha256: str) -> bytes | None:
        """The keyring document stored beside the blob, or None."""

    @abstractmethod
    def write_keyring(self, sha256: str, document: bytes) -> None:
        """Replace the keyring document beside the blob (callers merge, see `envelope.Keyring`)."""

    @abstractmethod
    def post_ballot(self, model_hash: str, signer: str, document: bytes) -> None:
        """Stores `signer`'s signed vote on the candidate `model_hash`, once: the same document again changes
        nothing; a different one is a `ConflictError` (a signed vote cannot be changed)."""

    @abstractmethod
    def ballots(self, model_hash: str) -> dict[str, bytes]:
        """The signed vote documents posted on candidate `model_hash`, by signer (checksummed address)."""

    def put_stream(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        with self.writer(expected) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def put(self, data: bytes, expected: str | None = None) -> str:
        return self.put_stream([data], expected)

    def get(self, sha256: str) -> bytes:
        return b"".join(self.iter_blob(sha256))

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None


class _FsspecWriter(BlobWriter):
    """Writes to `tmp/<uuid>` and moves it into place: a rename on a disk, a server-side copy on S3."""

    def __init__(self, store: FsspecStore, expected: str | None) -> None:
        super().__init__(expected, store.max_bytes)
        self._store = store
        self._tmp = f"{store.root}/tmp/{uuid.uuid4().hex}"
        self._done = False
        with store.storage_errors("start a write"):
            self._file: Any = store.fs.open(self._tmp, "wb", block_size=OBJECT_PART_BYTES)

    def _write(self, chunk: bytes | memoryview) -> None:
        with self._store.storage_errors("write a blob"):
            self._file.write(chunk)

    def _publish(self, sha256: str) -> None:
        try:
            with self._store.storage_errors(f"store blob {sha256}"):
                self._file.close()
                if self._store.holds_same(sha256, self.size):
                    return
                target = self._store.blob_path(sha256)
                if not self._store.object_store:
                    self._store.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                self._store.fs.mv(self._tmp, target)
                self._done = True
        finally:
            self.abort()

    def _discard(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(Exception):
            self._store.fs.rm(self._tmp)


class _ObjectWriter(BlobWriter):
    """Writes straight to the blob's key as a multipart upload that only `commit` completes.

    An object store publishes an object whole or not at all, so a write whose address is known needs no
    temporary object and no copy: a refused or interrupted write aborts the upload and the key never
    appears. An upload holds at most one part (`OBJECT_PART_BYTES`) in memory.
    """

    def __init__(self, store: FsspecStore, expected: str) -> None:
        super().__init__(expected, store.max_bytes)
        self._store = store
        self._done = False
        with store.storage_errors("start an upload"):
            self._file: Any = store.fs.open(
                store.blob_path(expected), "wb", autocommit=False, block_size=OBJECT_PART_BYTES
            )

    def _write(self, chunk: bytes | memoryview) -> None:
        with self._store.storage_errors("upload a blob"):
            self._file.write(chunk)

    def _publish(self, sha256: str) -> None:
        try:
            with self._store.storage_errors(f"store blob {sha256}"):
                self._file.close()  # uploads the last part; the upload stays open until commit()
                if self._store.holds_same(sha256, self.size):
                    return
                self._file.commit()
                self._done = True
        finally:
            self.abort()

    def _discard(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._file.discard()
        self._file.closed = True  # discard() drops the buffer but leaves the file open for __del__ to flush


class FsspecStore(BlobStore):
    """Blobs under any fsspec URL: `file:///srv/vault` (default), `memory://name`, `s3://bucket/prefix`.

    `storage_options` go to the filesystem (for S3: `endpoint_url`, `key`, `secret`, `client_kwargs`, ...);
    without them s3fs reads the usual AWS variables and files. An S3 store checks its bucket at once, so a
    missing bucket, refused credentials or an unreachable endpoint are a `ConfigError` naming the bucket.
    """

    def __init__(
        self, url: str, max_bytes: int = DEFAULT_MAX_BYTES, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"max_bytes must be positive, got {max_bytes}")
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except ImportError as exc:
            raise ConfigError(
                f"cannot open vault storage {url!r}: {exc}; for s3:// install the s3 extra: pip install 'tclearn[s3]'"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot open vault storage {url!r}: {exc}") from None
        self.fs: Any = fs
        self.root: str = root.rstrip("/")
        self.url = url
        self.max_bytes = max_bytes
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        self.object_store = bool(protocols & OBJECT_STORE_PROTOCOLS)
        if self.object_store:
            self._check_bucket()
        else:
            try:
                self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot prepare vault storage {url!r}: {exc}") from None

    def _check_bucket(self) -> None:
        """List one key under the root: the vault needs the bucket, and credentials that may list it."""
        bucket, _, prefix = self.root.partition("/")
        try:
            self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError):
                problem = "does not exist (the vault does not create buckets)"
            elif isinstance(exc, PermissionError):
                problem = "refused access (check the credentials and that they may list the bucket)"
            elif _is_storage_failure(exc):
                problem = "cannot be used"
            else:
                raise
            raise ConfigError(
                f"vault storage {self.url!r}: bucket {bucket!r} {problem}: {_cause(exc)}", bucket=bucket
            ) from None

    @contextlib.contextmanager
    def storage_errors(self, doing: str, *, absent_passes: bool = False) -> Iterator[None]:
        """Turn a failure of the backing storage into a `StorageError` naming the store.

        With `absent_passes` (a read) a `FileNotFoundError` goes through for the caller to answer "not held".
        """
        try:
            yield
        except Exception as exc:
            if not _is_storage_failure(exc) or (absent_passes and isinstance(exc, FileNotFoundError)):
                raise
            raise StorageError(f"vault storage {self.url!r} could not {doing}: {_cause(exc)}") from exc

    def blob_path(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.root}/blobs/{sha256[:2]}/{sha256}"

    def keyring_path(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.root}/keyrings/{sha256[:2]}/{sha256}.json"

    def ballot_folder(self, model_hash: str) -> str:
        return f"{self.root}/ballots/{check_sha256(model_hash)}"

    def writer(self, expected: str | None = None) -> BlobWriter:
        if expected is not None and self.object_store:
            return _ObjectWriter(self, expected)
        return _FsspecWriter(self, expected)

    def holds_same(self, sha256: str, size: int) -> bool:
        """Whether a verified write of `size` bytes to `sha256` is already stored (conflict if damaged)."""
        existing = self.size(sha256)
        # Same address, verified bytes: identical content unless the stored copy was damaged.
        if existing is not None and existing != size:
            raise ConflictError(f"the vault already holds a different {existing}-byte blob at {sha256}", sha256=sha256)
        return existing is not None

    def size(self, sha256: str) -> int | None:
        path = self.blob_path(sha256)
        try:
            with self.storage_errors(f"read the size of {sha256}", absent_passes=True):
                return int(self.fs.size(path))
        except FileNotFoundError:
            return None

    def iter_blob(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        path = self.blob_path(sha256)
        try:
            with self.storage_errors(f"open blob {sha256}", absent_passes=True):
                handle = self.fs.open(path, "rb", block_size=OBJECT_PART_BYTES)
        except FileNotFoundError:
            raise NotFoundError(f"the vault holds no blob {sha256}", sha256=sha256) from None
        return verified(_read_chunks(handle, chunk_size), sha256)

    def read_keyring(self, sha256: str) -> bytes | None:
        return self._read(self.keyring_path(sha256), f"read the keyring of {sha256}")

    def write_keyring(self, sha256: str, document: bytes) -> None:
        with self.storage_errors(f"write the keyring of {sha256}"):
            self._replace(self.keyring_path(sha256), document)

    def _replace(self, path: str, document: bytes) -> None:
        """Writes `document` at `path` whole: one PUT on an object store, a renamed temporary file on a disk."""
        if self.object_store:  # one PUT replaces an object whole
            self.fs.pipe_file(path, document)
            return
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}.json"
        self.fs.pipe_file(tmp, document)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(tmp, path)

    def _read(self, path: str, doing: str) -> bytes | None:
        try:
            with self.storage_errors(doing, absent_passes=True):
                return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def post_ballot(self, model_hash: str, signer: str, document: bytes) -> None:
        path = f"{self.ballot_folder(model_hash)}/{check_signer(signer)}.json"
        held = self._read(path, f"read {signer}'s ballot on {model_hash}")
        if held == document:
            return
        if held is not None:
            raise ConflictError(
                f"{signer} already posted a different signed vote on {model_hash}: a signed vote cannot be changed",
                sha256=model_hash,
                signer=signer,
            )
        with self.storage_errors(f"store {signer}'s ballot on {model_hash}"):
            self._replace(path, document)

    def ballots(self, model_hash: str) -> dict[str, bytes]:
        folder = self.ballot_folder(model_hash)
        try:
            with self.storage_errors(f"list the ballots on {model_hash}", absent_passes=True):
                paths = [p for p in self.fs.find(folder) if p.endswith(".json")]
        except FileNotFoundError:
            return {}
        found: dict[str, bytes] = {}
        for path in paths:
            signer = path.rsplit("/", 1)[1].removesuffix(".json")
            document = self._read(path, f"read {signer}'s ballot on {model_hash}")
            if document is not None and is_address(signer):
                found[to_checksum_address(signer)] = document
        return found


def _is_storage_failure(exc: BaseException) -> bool:
    """An OSError (s3fs translates S3's answers into these) or a botocore / aiohttp transport error."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.split(".")[0] in _TRANSPORT_PACKAGES for cls in type(exc).__mro__)


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_chunks(handle: Any, chunk_size: int) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk
