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

import os
import struct
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


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[memoryview]:
    """Yield views of exactly `size` bytes, then one shorter remainder (possibly empty)."""
    buf = bytearray()
    for chunk in chunks:
        if not buf and len(chunk) == size:
            yield memoryview(chunk)
            continue
        buf += chunk
        while len(buf) >= size:
            yield memoryview(bytes(memoryview(buf)[:size]))
            del buf[:size]
    yield memoryview(bytes(buf))


def encrypt_stream(chunks: Iterable[bytes], key: bytes, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """The header, then one ciphertext chunk per `chunk_size` bytes of plaintext, then the final one."""
    if len(key) != 32:
        raise IntegrityError(f"data key must be 32 bytes, got {len(key)}")
    if not 1 <= chunk_size < (1 << 31):
        raise IntegrityError(f"invalid chunk size {chunk_size}")
    prefix = os.urandom(8)
    header = HEADER.pack(MAGIC, VERSION, chunk_size, prefix)
    aead = AESGCM(key)
    yield header
    for index, piece in enumerate(_rechunk(chunks, chunk_size)):
        final = len(piece) < chunk_size
        yield aead.encrypt(_nonce(prefix, index), piece, _aad(header, index, final))
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
    """Plaintext of a version-1 ciphertext stream; raises `IntegrityError` on any tampering."""
    aead = AESGCM(key)
    buf = bytearray()
    header: bytes | None = None
    chunk_size, prefix, index = 0, b"", 0

    def open_chunk(data: bytes | memoryview, final: bool) -> bytes:
        assert header is not None
        try:
            return aead.decrypt(_nonce(prefix, index), data, _aad(header, index, final))
        except InvalidTag:
            raise IntegrityError(
                f"ciphertext chunk {index} fails authentication (wrong key, tampered, reordered or truncated)",
                chunk=index,
            ) from None

    for chunk in chunks:
        buf += chunk
        if header is None:
            if len(buf) < HEADER.size:
                continue
            header = bytes(buf[: HEADER.size])
            chunk_size, prefix = parse_header(header)
            del buf[: HEADER.size]
        full = chunk_size + TAG_SIZE
        while len(buf) >= full:
            # A full-size chunk is never final: the encryptor always ends with a shorter one.
            yield open_chunk(memoryview(buf)[:full], final=False)
            del buf[:full]
            index += 1
    if header is None:
        parse_header(bytes(buf))
    if len(buf) < TAG_SIZE:
        raise IntegrityError(f"ciphertext is truncated: final chunk {index} is missing", chunk=index)
    yield open_chunk(bytes(buf), final=True)
