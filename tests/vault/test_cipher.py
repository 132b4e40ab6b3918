"""Chunked AES-GCM: round trip at every boundary, and tampering of every kind detected."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tclearn.errors import IntegrityError
from tclearn.vault.cipher import HEADER, TAG_SIZE, decrypt_stream, encrypt_stream

KEY = bytes(range(32))
CHUNK = 64


def encrypt(data: bytes) -> bytes:
    return b"".join(encrypt_stream([data[:10], data[10:]], KEY, CHUNK))


def decrypt(data: bytes, key: bytes = KEY, split: int = 7) -> bytes:
    return b"".join(decrypt_stream((data[i : i + split] for i in range(0, len(data), split)), key))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 3])
@pytest.mark.parametrize("split", [1, 50, 10_000])
def test_round_trip(size: int, split: int) -> None:
    data = os.urandom(size)
    assert decrypt(encrypt(data), split=split) == data


def test_fresh_nonce_prefix_each_time() -> None:
    assert encrypt(b"same") != encrypt(b"same")


def test_wrong_key() -> None:
    with pytest.raises(IntegrityError, match="chunk 0 fails authentication"):
        decrypt(encrypt(b"secret"), key=bytes(32))


def test_flipped_byte() -> None:
    sealed = bytearray(encrypt(os.urandom(3 * CHUNK)))
    sealed[HEADER.size + CHUNK + TAG_SIZE + 5] ^= 1
    with pytest.raises(IntegrityError, match="chunk 1"):
        decrypt(bytes(sealed))


def test_truncated_at_chunk_boundary() -> None:
    sealed = encrypt(os.urandom(3 * CHUNK + 5))
    cut = sealed[: HEADER.size + 2 * (CHUNK + TAG_SIZE)]
    with pytest.raises(IntegrityError, match="truncated"):
        decrypt(cut)


def test_truncated_inside_chunk() -> None:
    sealed = encrypt(os.urandom(3 * CHUNK))
    with pytest.raises(IntegrityError, match="fails authentication"):
        decrypt(sealed[: HEADER.size + CHUNK + TAG_SIZE + 30])


def test_reordered_chunks() -> None:
    sealed = encrypt(os.urandom(3 * CHUNK))
    size = CHUNK + TAG_SIZE
    head, body = sealed[: HEADER.size], sealed[HEADER.size :]
    swapped = head + body[size : 2 * size] + body[:size] + body[2 * size :]
    with pytest.raises(IntegrityError, match="chunk 0"):
        decrypt(swapped)


def test_not_a_sealed_model() -> None:
    with pytest.raises(IntegrityError, match="not a sealed model"):
        decrypt(b"PK" + bytes(40))
    with pytest.raises(IntegrityError, match="shorter than its header"):
        decrypt(b"TCLV")


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=700), chunk=st.integers(1, 200), split=st.integers(1, 300))
def test_round_trip_property(data: bytes, chunk: int, split: int) -> None:
    sealed = b"".join(encrypt_stream([data], KEY, chunk))
    assert len(sealed) == HEADER.size + (len(data) // chunk + 1) * TAG_SIZE + len(data)
    assert decrypt(sealed, split=split) == data
