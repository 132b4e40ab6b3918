"""One suite for every `BlobStore`: memory, file, S3 (moto's server on loopback) and HTTP (a live vault service)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from eth_account.signers.local import LocalAccount

from tclearn.errors import ConflictError, IntegrityError, NotFoundError, TooLargeError

if TYPE_CHECKING:
    from tests.vault.conftest import StoreCase


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(case: StoreCase) -> list[str]:
    """Temporary objects the backing store still holds (an aborted write must leave none).

    A server notices a dropped upload a moment after the client gave up, hence the short wait.
    """
    deadline = time.monotonic() + 3
    while (found := list(case.backing.fs.find(f"{case.backing.root}/tmp"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_put_get_round_trip(case: StoreCase) -> None:
    data = os.urandom(300_000)

    address = case.store.put(data)

    assert address == sha(data)
    assert case.store.get(address) == data
    assert case.store.size(address) == len(data)
    assert case.store.exists(address)


def test_streaming_put_without_known_address(case: StoreCase) -> None:
    chunks = [os.urandom(70_000) for _ in range(5)]

    address = case.store.put_stream(iter(chunks))

    assert address == sha(b"".join(chunks))
    assert b"".join(case.store.iter_blob(address, chunk_size=4096)) == b"".join(chunks)


def test_put_is_idempotent(case: StoreCase) -> None:
    data = b"same bytes"
    assert case.store.put(data) == case.store.put(data) == sha(data)


def test_missing_blob_is_not_found(case: StoreCase) -> None:
    missing = sha(b"never stored")
    assert case.store.size(missing) is None
    assert not case.store.exists(missing)
    with pytest.raises(NotFoundError, match=missing):
        case.store.get(missing)


def test_bytes_that_do_not_hash_to_the_address_are_refused(case: StoreCase) -> None:
    claimed = sha(b"the real content")

    with pytest.raises(IntegrityError, match=claimed):
        case.store.put(b"other content", expected=claimed)

    assert not case.store.exists(claimed)
    assert leftovers(case) == []


def test_flipped_byte_is_detected_on_read(case: StoreCase) -> None:
    data = os.urandom(10_000)
    address = case.store.put(data)
    path = case.backing.blob_path(address)
    damaged = bytearray(case.backing.fs.cat_file(path))
    damaged[1234] ^= 0x01
    case.backing.fs.pipe_file(path, bytes(damaged))

    with pytest.raises(IntegrityError, match=address):
        case.store.get(address)


def test_concurrent_writers_of_one_blob(case: StoreCase) -> None:
    data = os.urandom(200_000)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: case.store.put_stream(iter([data[:1000], data[1000:]]), sha(data)), range(8)))

    assert results == [sha(data)] * 8
    assert case.store.get(sha(data)) == data
    assert leftovers(case) == []


def test_interrupted_upload_leaves_nothing(case: StoreCase) -> None:
    data = os.urandom(100_000)

    def broken() -> Iterator[bytes]:
        yield data[:50_000]
        raise ConnectionError("writer died")

    with pytest.raises(Exception):  # noqa: B017 - the HTTP client wraps the cause in its own error
        case.store.put_stream(broken(), sha(data))

    assert not case.store.exists(sha(data))
    assert leftovers(case) == []


def test_size_limit(case: StoreCase, small_limit: int) -> None:
    data = b"x" * (small_limit + 1)

    with pytest.raises(TooLargeError):
        case.store.put_stream(iter([data[:1000], data[1000:]]), sha(data))

    assert not case.store.exists(sha(data))
    assert leftovers(case) == []


def test_keyring_document_beside_blob(case: StoreCase) -> None:
    address = case.store.put(b"model")
    assert case.store.read_keyring(address) is None
    document = b'{"model_hash":"%s","version":1,"wraps":{}}' % address.encode()

    case.store.write_keyring(address, document)

    assert case.store.read_keyring(address) == document


def test_a_ballot_is_posted_once_and_cannot_be_changed(case: StoreCase, member: LocalAccount) -> None:
    candidate, vote = sha(b"candidate"), b'{"approve":true}'
    assert case.store.ballots(candidate) == {}

    case.store.post_ballot(candidate, member.address.lower(), vote)
    case.store.post_ballot(candidate, member.address, vote)  # the same document again: nothing changes

    assert case.store.ballots(candidate) == {member.address: vote}
    assert case.store.ballots(sha(b"another candidate")) == {}
    with pytest.raises(ConflictError, match=f"{member.address} already posted a different signed vote on {candidate}"):
        case.store.post_ballot(candidate, member.address, b'{"approve":false}')
    assert case.store.ballots(candidate) == {member.address: vote}
    assert leftovers(case) == []


def test_a_ballot_needs_a_signer_address_and_a_model_hash(case: StoreCase) -> None:
    with pytest.raises(IntegrityError, match="invalid ballot signer 'nobody'"):
        case.store.post_ballot(sha(b"candidate"), "nobody", b"{}")
    with pytest.raises(IntegrityError, match="invalid sha256 'xyz'"):
        case.store.ballots("xyz")


def test_rewrite_over_a_damaged_copy_is_a_conflict(case: StoreCase) -> None:
    data = os.urandom(5000)
    address = case.store.put(data)
    case.backing.fs.pipe_file(case.backing.blob_path(address), data[:-1])

    with pytest.raises(ConflictError, match=address):
        case.store.put(data)
