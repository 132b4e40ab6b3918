"""Signed requests: every way authentication can fail, on the verifier and over HTTP."""

from __future__ import annotations

import hashlib
import socket
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from tclearn.errors import AccessDenied, AuthError, TooLargeError, VaultUnavailable
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.http import HttpStore
from tclearn.vault.signing import (
    ADDRESS_HEADER,
    EMPTY_SHA256,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestVerifier,
    sign_request,
)

if TYPE_CHECKING:
    from tests.vault.conftest import LiveVault

NOW = 1_800_000_000.0
PATH = "/blobs/" + "ab" * 32


@pytest.fixture
def verifier(directory: StaticDirectory) -> RequestVerifier:
    return RequestVerifier(directory, clock=lambda: NOW)


def test_valid_request(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = sign_request(member.key, "GET", PATH, now=NOW - 10)
    assert verifier.verify("GET", PATH, headers, EMPTY_SHA256) == member.address


@pytest.mark.parametrize("header", [ADDRESS_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER])
def test_missing_header(verifier: RequestVerifier, member: LocalAccount, header: str) -> None:
    headers = sign_request(member.key, "GET", PATH, now=NOW)
    del headers[header]
    with pytest.raises(AuthError, match=f"missing header.*{header}"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_timestamp(verifier: RequestVerifier, member: LocalAccount, skew: int) -> None:
    headers = sign_request(member.key, "GET", PATH, now=NOW + skew)
    with pytest.raises(AuthError, match="stale request"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_bad_timestamp(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = {**sign_request(member.key, "GET", PATH, now=NOW), TIMESTAMP_HEADER: "soon"}
    with pytest.raises(AuthError, match="invalid timestamp 'soon'"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_replayed_nonce(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = sign_request(member.key, "GET", PATH, now=NOW)
    verifier.verify("GET", PATH, headers, EMPTY_SHA256)
    with pytest.raises(AuthError, match="replayed request"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PUT", PATH, EMPTY_SHA256), ("GET", "/blobs/" + "cd" * 32, EMPTY_SHA256), ("GET", PATH, "00" * 32)],
)
def test_signature_over_other_request(
    verifier: RequestVerifier, member: LocalAccount, method: str, path: str, body: str
) -> None:
    headers = sign_request(member.key, "GET", PATH, now=NOW)
    with pytest.raises(AuthError, match="signature does not match"):
        verifier.verify(method, path, headers, body)


def test_signature_of_another_account(verifier: RequestVerifier, member: LocalAccount, outsider: LocalAccount) -> None:
    headers = {**sign_request(outsider.key, "GET", PATH, now=NOW), ADDRESS_HEADER: member.address}
    with pytest.raises(AuthError, match="signature does not match"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_malformed_signature(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = {**sign_request(member.key, "GET", PATH, now=NOW), SIGNATURE_HEADER: "0x1234"}
    with pytest.raises(AuthError, match="malformed signature"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_non_member(verifier: RequestVerifier, outsider: LocalAccount) -> None:
    headers = sign_request(outsider.key, "GET", PATH, now=NOW)
    with pytest.raises(AccessDenied, match=f"{outsider.address} is not an active member"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_deactivated_member(verifier: RequestVerifier, directory: StaticDirectory, member: LocalAccount) -> None:
    directory.remove(member.address)
    with pytest.raises(AccessDenied):
        verifier.verify("GET", PATH, sign_request(member.key, "GET", PATH, now=NOW), EMPTY_SHA256)


def test_http_status_codes(live_vault: LiveVault, member: LocalAccount, outsider: LocalAccount) -> None:
    data = b"model bytes"
    address = hashlib.sha256(data).hexdigest()
    path = f"/blobs/{address}"
    with httpx.Client(base_url=live_vault.url) as client:
        unsigned = client.put(path, content=data)
        stranger = client.put(path, content=data, headers=sign_request(outsider.key, "PUT", path, address))
        signed = sign_request(member.key, "PUT", path, address)
        created = client.put(path, content=data, headers=signed)
        replayed = client.put(path, content=data, headers=signed)
        wrong_body = client.put(path, content=b"other", headers=sign_request(member.key, "PUT", path, address))
        missing_path = "/blobs/" + "00" * 32
        missing = client.get(missing_path, headers=sign_request(member.key, "GET", missing_path))
        bad_name = client.get("/blobs/xyz", headers=sign_request(member.key, "GET", "/blobs/xyz"))
        big = b"x" * (2 << 20)
        big_path = f"/blobs/{hashlib.sha256(big).hexdigest()}"
        too_large = client.put(
            big_path,
            content=big,
            headers=sign_request(member.key, "PUT", big_path, hashlib.sha256(big).hexdigest()),
        )

    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "auth_error")
    assert (stranger.status_code, stranger.json()["code"]) == (403, "access_denied")
    assert created.status_code == 201 and created.json() == {"sha256": address, "size": len(data)}
    assert replayed.status_code == 401 and "replayed" in replayed.json()["message"]
    assert wrong_body.status_code == 400 and address in wrong_body.json()["message"]
    assert missing.status_code == 404 and "00" * 32 in missing.json()["message"]
    assert bad_name.status_code == 400 and "'xyz'" in bad_name.json()["message"]
    assert too_large.status_code == 413 and "size limit" in too_large.json()["message"]


def test_access_log_records_reads_and_writes(live_vault: LiveVault, member: LocalAccount) -> None:
    client = HttpStore(live_vault.url, member.key)
    address = client.put(b"logged")
    client.get(address)

    entries = client.access_log(sha256=address)

    assert [(e["account"], e["action"], e["size"]) for e in entries] == [
        (member.address, "get", 6),
        (member.address, "put", 6),
    ]
    client.close()


def test_public_reads(public_vault: LiveVault, member: LocalAccount) -> None:
    writer, anonymous = HttpStore(public_vault.url, member.key), HttpStore(public_vault.url, None)
    address = writer.put(b"public model")

    assert anonymous.get(address) == b"public model"
    with pytest.raises(AuthError):
        anonymous.put(b"anonymous write")
    with pytest.raises(AuthError):
        anonymous.access_log()
    writer.close()
    anonymous.close()


def test_connection_dropped_mid_upload_leaves_nothing(live_vault: LiveVault, member: LocalAccount) -> None:
    data = b"y" * 200_000
    address = hashlib.sha256(data).hexdigest()
    path = f"/blobs/{address}"
    headers = sign_request(member.key, "PUT", path, address)
    host, port = live_vault.url.removeprefix("http://").split(":")
    request = f"PUT {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(data)}\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request.encode() + data[:100_000])
        time.sleep(0.3)  # let the server start writing before the connection drops

    deadline = time.monotonic() + 3
    while live_vault.store.fs.find(f"{live_vault.store.root}/tmp") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_vault.store.fs.find(f"{live_vault.store.root}/tmp") == []
    assert not live_vault.store.exists(address)


def test_unreachable_vault_is_one_clear_error(member: LocalAccount) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpStore(f"http://127.0.0.1:{port}", member.key)
    with pytest.raises(VaultUnavailable, match=f"127.0.0.1:{port}"):
        client.get("ab" * 32)
    client.close()


def test_oversized_upload_refused_before_the_body(live_vault: LiveVault, member: LocalAccount) -> None:
    client = HttpStore(live_vault.url, member.key)
    with pytest.raises(TooLargeError, match="size limit"):
        client.put(b"z" * (8 << 20))
    client.close()


def test_oversized_keyring_is_refused(live_vault: LiveVault, member: LocalAccount) -> None:
    client = HttpStore(live_vault.url, member.key)
    address = client.put(b"model")
    with pytest.raises(TooLargeError, match="keyring exceeds"):
        client.write_keyring(address, b" " * (2 << 20))
    client.close()
