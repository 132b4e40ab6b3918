"""Chunked AES-256-GCM: encrypt and decrypt a model stream of any size in constant memory.

Format (version 1), all integers big-endian:

    header  = b"TCLV" | version u8 (=1) | chunk_size u32 | nonce_prefix 8 bytes      (17 bytes)
    chunk i = AES-GCM(key, nonce = nonce_prefix | i u32, plaintext, aad = header | i u64 | final u8)

Every chunk but the last carries exactly `chunk_size` plaintext bytes; the last one carries fewer
(possibly zero) and has `final = 1`. A ciphertext cut at a chunk boundary therefore lacks its final
chunk, one cut inside a chunk fails that chunk's tag, and swapped or repeated chunks fail the tag
because the index is in the nonce and the associated data. The header is bound to every chunk.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tclearn.errors import IntegrityError

MAGIC = b"TCLV"
VERSION = 1
HEADER = struct.Struct(">4sBI8s")
TAG_SIZE = 16
DEFAULT_CHUNK = 1 << 20
MAX_CHUNKS = 1 << 32


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= MAX_CHUNKS:
        raise IntegrityError(f"stream has more than {MAX_CHUNKS} chunks")
    return prefix + struct.pack(">I", index)


def _frames(chunks: Iterable[bytes], size: int) -> Iterator[list[memoryview]]:
    """The stream as frames of exactly `size` bytes, then one shorter remainder (possibly empty).

    A frame is a list of views into the incoming chunks (one view when the chunks line up with the frames), so
    no byte is copied to re-cut the stream. A chunk that is not `bytes` is copied once: a view must not change.
    """
    views: deque[memoryview] = deque()
    held = 0
    for chunk in chunks:
        if not chunk:
            continue
        views.append(memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk)))
        held += len(views[-1])
        while held >= size:
            frame, need = [], size
            while need:
                first = views.popleft()
                if len(first) > need:
                    views.appendleft(first[need:])
                    first = first[:need]
                frame.append(first)
                need -= len(first)
            held -= size
            yield frame
    yield list(views)


class _Joiner:
    """A frame as one buffer for AES-GCM: its only view as is, or its views copied into one buffer that is
    allocated once per stream (fresh pages for every frame cost more than the copy)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffer: memoryview | None = None

    def __call__(self, frame: list[memoryview]) -> memoryview | bytes:
        if len(frame) <= 1:
            return frame[0] if frame else b""
        if self._buffer is None:
            self._buffer = memoryview(bytearray(self.size))
        end = 0
        for view in frame:
            self._buffer[end : end + len(view)] = view
            end += len(view)
        return self._buffer[:end]


def encrypt_stream(chunks: Iterable[bytes], key: bytes, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """The header, then one ciphertext chunk per `chunk_size` bytes of plaintext, then the final one."""
    if len(key) != 32:
        raise IntegrityError(f"data key must be 32 bytes, got {len(key)}")
    if not 1 <= chunk_size < (1 << 31):
        raise IntegrityError(f"invalid chunk size {chunk_size}")
    prefix = os.urandom(8)
    header = HEADER.pack(MAGIC, VERSION, chunk_size, prefix)
    aead, joined = AESGCM(key), _Joiner(chunk_size)
    yield header
    for index, frame in enumerate(_frames(chunks, chunk_size)):
        final = sum(map(len, frame)) < chunk_size
        yield aead.encrypt(_nonce(prefix, index), joined(frame), _aad(header, index, final))
        if final:
            return


def parse_header(header: bytes) -> tuple[int, bytes]:
    """(chunk_size, nonce_prefix) of a version-1 header; raises naming what is wrong."""
    if len(header) < HEADER.size:
        raise IntegrityError("ciphertext is shorter than its header")
    magic, version, chunk_size, prefix = HEADER.unpack(header[: HEADER.size])
    if magic != MAGIC:
        raise IntegrityError(f"ciphertext does not start with {MAGIC!r} (got {magic!r}): not a sealed model")
    if version != VERSION:
        raise IntegrityError(f"unsupported ciphertext version {version}; this tclearn reads {VERSION}")
    if chunk_size < 1:
        raise IntegrityError(f"invalid chunk size {chunk_size} in ciphertext header")
    return int(chunk_size), bytes(prefix)


def decrypt_stream(chunks: Iterable[bytes], key: bytes) -> Iterator[bytes]:
    """Plaintext of a version-1 ciphertext stream; raises `IntegrityError` on any tampering.

    The stream may come in pieces of any size; a sealed chunk that lies in one piece is opened where it lies,
    one spread over several is copied into a buffer reused for the whole stream.
    """
    aead = AESGCM(key)
    stream = iter(chunks)
    start = bytearray()
    for chunk in stream:
        start += chunk
        if len(start) >= HEADER.size:
            break
    header = bytes(start[: HEADER.size])
    chunk_size, prefix = parse_header(header)
    full = chunk_size + TAG_SIZE
    joined = _Joiner(full)
    for index, frame in enumerate(_frames(itertools.chain([bytes(start[HEADER.size :])], stream), full)):
        size = sum(map(len, frame))
        if size < TAG_SIZE:
            raise IntegrityError(f"ciphertext is truncated: final chunk {index} is missing", chunk=index)
        try:
            # A full-size chunk is never final: the encryptor always ends with a shorter one.
            plain = aead.decrypt(_nonce(prefix, index), joined(frame), _aad(header, index, final=size < full))
        except InvalidTag:
            raise IntegrityError(
                f"ciphertext chunk {index} fails authentication (wrong key, tampered, reordered or truncated)",
                chunk=index,
            ) from None
        yield plain
