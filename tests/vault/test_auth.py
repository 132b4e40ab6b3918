"""Signed requests: every way authentication can fail, on the verifier and over HTTP."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from services.vault.app import create_app as create_vault
from tclearn.config import ServerSection
from tclearn.errors import AccessDenied, AuthError, ConfigError, TooLargeError, VaultUnavailable
from tclearn.state.db import Database
from tclearn.vault.audience import Audience, CoalitionId, service_url
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.http import HttpStore
from tclearn.vault.replay import MemoryReplayStore
from tclearn.vault.replay_db import open_replay_store
from tclearn.vault.signing import (
    ADDRESS_HEADER,
    AUDIENCE_HEADER,
    EMPTY_SHA256,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestVerifier,
    request_message,
    sign_request,
    typed_data,
)
from tclearn.vault.store import FsspecStore
from tests.vault.conftest import account

if TYPE_CHECKING:
    from tests.vault.conftest import LiveVault

NOW = 1_800_000_000.0
PATH = "/blobs/" + "ab" * 32
COALITION = CoalitionId(31337, "0x" + "11" * 20)
AUDIENCE = Audience.of("http://vault.test:8700", COALITION)


@pytest.fixture
def verifier(directory: StaticDirectory) -> RequestVerifier:
    return RequestVerifier(directory, AUDIENCE, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("method", "path", "body", "timestamp", "nonce"),
    [
        ("GET", PATH, EMPTY_SHA256, int(NOW), "ab" * 16),
        ("put", "/jobs?limit=5&x=é", "", 0, ""),
        ("POST", "/", "x", 2**40, "n"),
    ],
)
def test_the_signed_message_is_the_eip712_encoding_of_eth_account(
    method: str, path: str, body: str, timestamp: int, nonce: str
) -> None:
    for audience in (AUDIENCE, Audience.of("https://[::1]:9000/base")):
        assert request_message(audience, method, path, body, timestamp, nonce) == typed_data(
            audience, method, path, body, timestamp, nonce
        )


def test_valid_request(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW - 10)
    assert verifier.verify("GET", PATH, headers, EMPTY_SHA256) == member.address


@pytest.mark.parametrize("header", [ADDRESS_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, AUDIENCE_HEADER])
def test_missing_header(verifier: RequestVerifier, member: LocalAccount, header: str) -> None:
    headers = sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW)
    del headers[header]
    with pytest.raises(AuthError, match=f"missing header.*{header}"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_timestamp(verifier: RequestVerifier, member: LocalAccount, skew: int) -> None:
    headers = sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW + skew)
    with pytest.raises(AuthError, match="stale request"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_bad_timestamp(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = {**sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW), TIMESTAMP_HEADER: "soon"}
    with pytest.raises(AuthError, match="invalid timestamp 'soon'"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_replayed_nonce(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW)
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
    headers = sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW)
    with pytest.raises(AuthError, match="signature does not match"):
        verifier.verify(method, path, headers, body)


def test_signature_of_another_account(verifier: RequestVerifier, member: LocalAccount, outsider: LocalAccount) -> None:
    headers = {**sign_request(outsider.key, AUDIENCE, "GET", PATH, now=NOW), ADDRESS_HEADER: member.address}
    with pytest.raises(AuthError, match="signature does not match"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_malformed_signature(verifier: RequestVerifier, member: LocalAccount) -> None:
    headers = {**sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW), SIGNATURE_HEADER: "0x1234"}
    with pytest.raises(AuthError, match="malformed signature"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_non_member(verifier: RequestVerifier, outsider: LocalAccount) -> None:
    headers = sign_request(outsider.key, AUDIENCE, "GET", PATH, now=NOW)
    with pytest.raises(AccessDenied, match=f"{outsider.address} is not an active member"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_deactivated_member(verifier: RequestVerifier, directory: StaticDirectory, member: LocalAccount) -> None:
    directory.remove(member.address)
    with pytest.raises(AccessDenied):
        verifier.verify("GET", PATH, sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW), EMPTY_SHA256)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (Audience.of("http://other-vault.test:8700", COALITION), "http://other-vault.test:8700"),
        (Audience.of("http://vault.test:8701", COALITION), "http://vault.test:8701"),
        (Audience.of("https://vault.test:8700", COALITION), "https://vault.test:8700"),
        (Audience.of("http://vault.test:8700", CoalitionId(1, COALITION.contract)), "chain 1,"),
        (Audience.of("http://vault.test:8700", CoalitionId(31337, "0x" + "22" * 20)), "0x" + "22" * 20),
    ],
)
def test_a_request_signed_for_another_audience_is_refused_naming_both(
    verifier: RequestVerifier, member: LocalAccount, other: Audience, named: str
) -> None:
    headers = sign_request(member.key, other, "GET", PATH, now=NOW)
    with pytest.raises(AuthError, match="audience mismatch") as refused:
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)
    assert named.lower() in refused.value.message.lower() and str(AUDIENCE) in refused.value.message


def test_the_same_url_written_differently_is_the_same_audience(verifier: RequestVerifier, member: LocalAccount) -> None:
    same = Audience.of("HTTP://Vault.Test:8700/", COALITION)
    assert verifier.verify("GET", PATH, sign_request(member.key, same, "GET", PATH, now=NOW), EMPTY_SHA256)
    assert Audience.of("https://vault.test") == Audience.of("https://vault.test:443")


def test_a_forged_audience_header_does_not_help_a_replay(verifier: RequestVerifier, member: LocalAccount) -> None:
    """Signed for another service, the header rewritten to name this one: the signature no longer matches."""
    elsewhere = Audience.of("http://other-vault.test:8700", COALITION)
    headers = {**sign_request(member.key, elsewhere, "GET", PATH, now=NOW), AUDIENCE_HEADER: AUDIENCE.header()}
    with pytest.raises(AuthError, match="signature does not match"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


@pytest.mark.parametrize("header", ["http://vault.test:8700", "ftp://vault.test 1 0x" + "11" * 20, "x y z"])
def test_a_malformed_audience_header_is_named(verifier: RequestVerifier, member: LocalAccount, header: str) -> None:
    headers = {**sign_request(member.key, AUDIENCE, "GET", PATH, now=NOW), AUDIENCE_HEADER: header}
    with pytest.raises(AuthError, match="malformed audience header"):
        verifier.verify("GET", PATH, headers, EMPTY_SHA256)


def test_replicas_sharing_a_replay_store_refuse_each_others_replays(
    directory: StaticDirectory, member: LocalAccount, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/nonces.db"
    first, second = (RequestVerifier(directory, AUDIENCE, replay=open_replay_store(url)) for _ in range(2))
    alone = RequestVerifier(directory, AUDIENCE)  # the default: this process's memory only
    headers = sign_request(member.key, AUDIENCE, "GET", PATH)

    assert first.verify("GET", PATH, headers, EMPTY_SHA256) == member.address
    with pytest.raises(AuthError, match="replayed request"):
        second.verify("GET", PATH, headers, EMPTY_SHA256)
    assert alone.verify("GET", PATH, headers, EMPTY_SHA256) == member.address  # what the shared store prevents
    fresh = sign_request(member.key, AUDIENCE, "GET", PATH)
    assert second.verify("GET", PATH, fresh, EMPTY_SHA256) == member.address


def test_two_vault_replicas_on_one_sqlite_file_refuse_each_others_replays(
    tmp_path: Path, directory: StaticDirectory, member: LocalAccount
) -> None:
    audience = Audience.of("http://vault.test:8700")
    store = FsspecStore(f"file://{tmp_path}/store")
    replicas = [
        create_vault(store, Database(f"sqlite:///{tmp_path}/access.db"), directory, audience, replay=replay)
        for replay in (open_replay_store(f"sqlite:///{tmp_path}/nonces.db") for _ in range(2))
    ]
    data = b"replicated"
    path = f"/blobs/{hashlib.sha256(data).hexdigest()}"
    headers = sign_request(member.key, audience, "PUT", path, hashlib.sha256(data).hexdigest())
    with TestClient(replicas[0]) as one, TestClient(replicas[1]) as other:
        stored = one.put(path, content=data, headers=headers)
        replayed = other.put(path, content=data, headers=headers)
        read = other.get(path, headers=sign_request(member.key, audience, "GET", path))

    assert stored.status_code == 201
    assert replayed.status_code == 401 and "replayed request" in replayed.json()["message"]
    assert read.status_code == 200 and read.content == data


def test_a_vault_refuses_a_request_signed_for_another_vault(
    tmp_path: Path, directory: StaticDirectory, member: LocalAccount
) -> None:
    store = FsspecStore(f"file://{tmp_path}/store")
    mine, theirs = Audience.of("http://vault-x.test:8700"), Audience.of("http://vault-y.test:8700")
    app = create_vault(store, Database("sqlite://"), directory, theirs)
    path = "/blobs/" + "ab" * 32
    with TestClient(app) as client:
        refused = client.get(path, headers=sign_request(member.key, mine, "GET", path))

    assert refused.status_code == 401 and refused.json()["code"] == "auth_error"
    assert refused.json()["message"].startswith("audience mismatch: the request was signed for http://vault-x.test")
    assert refused.json()["expected"] == theirs.header() and refused.json()["signed_for"] == mine.header()


def test_http_status_codes(live_vault: LiveVault, member: LocalAccount, outsider: LocalAccount) -> None:
    data = b"model bytes"
    address = hashlib.sha256(data).hexdigest()
    path = f"/blobs/{address}"
    aud = Audience.of(live_vault.url)
    with httpx.Client(base_url=live_vault.url) as client:
        unsigned = client.put(path, content=data)
        stranger = client.put(path, content=data, headers=sign_request(outsider.key, aud, "PUT", path, address))
        signed = sign_request(member.key, aud, "PUT", path, address)
        created = client.put(path, content=data, headers=signed)
        replayed = client.put(path, content=data, headers=signed)
        wrong_body = client.put(path, content=b"other", headers=sign_request(member.key, aud, "PUT", path, address))
        missing_path = "/blobs/" + "00" * 32
        missing = client.get(missing_path, headers=sign_request(member.key, aud, "GET", missing_path))
        bad_name = client.get("/blobs/xyz", headers=sign_request(member.key, aud, "GET", "/blobs/xyz"))
        big = b"x" * (2 << 20)
        big_path = f"/blobs/{hashlib.sha256(big).hexdigest()}"
        too_large = client.put(
            big_path,
            content=big,
            headers=sign_request(member.key, aud, "PUT", big_path, hashlib.sha256(big).hexdigest()),
        )

    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "auth_error")
    assert (stranger.status_code, stranger.json()["code"]) == (403, "access_denied")
    assert created.status_code == 201 and created.json() == {"sha256": address, "size": len(data)}
    assert replayed.status_code == 401 and "replayed" in replayed.json()["message"]
    assert wrong_body.status_code == 400 and address in wrong_body.json()["message"]
    assert missing.status_code == 404 and "00" * 32 in missing.json()["message"]
    assert bad_name.status_code == 400 and "'xyz'" in bad_name.json()["message"]
    assert too_large.status_code == 413 and "size limit" in too_large.json()["message"]


def test_access_log_records_reads_and_writes_and_only_auditors_read_it(
    live_vault: LiveVault, member: LocalAccount, auditor: LocalAccount
) -> None:
    client, auditing = HttpStore(live_vault.url, member.key), HttpStore(live_vault.url, auditor.key)
    address = client.put(b"logged")
    client.get(address)
    assert auditing.get(address) == b"logged"  # an auditor reads blobs, though not a member

    entries = auditing.access_log(sha256=address)

    assert [(e["account"], e["action"], e["size"]) for e in entries] == [
        (auditor.address, "get", 6),
        (member.address, "get", 6),
        (member.address, "put", 6),
    ]
    with pytest.raises(AccessDenied, match=f"{member.address} is not an auditor of this vault"):
        client.access_log()
    with pytest.raises(AccessDenied, match=f"{auditor.address} is not an active member"):
        auditing.put(b"an auditor writes nothing")
    client.close()
    auditing.close()


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
    headers = sign_request(member.key, Audience.of(live_vault.url), "PUT", path, address)
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


def test_only_the_signer_posts_its_ballot_and_reads_are_logged(
    live_vault: LiveVault, member: LocalAccount, auditor: LocalAccount
) -> None:
    other = HttpStore(live_vault.url, account(2).key)
    client, auditing = HttpStore(live_vault.url, member.key), HttpStore(live_vault.url, auditor.key)
    candidate = "cd" * 32

    with pytest.raises(AccessDenied, match=f"{account(2).address} may not post a ballot for {member.address}"):
        other.post_ballot(candidate, member.address, b"forged")
    with pytest.raises(TooLargeError, match="ballot exceeds"):
        client.post_ballot(candidate, member.address, b" " * (64 << 10))
    client.post_ballot(candidate, member.address, b"vote")

    assert other.ballots(candidate) == {member.address: b"vote"}
    assert [(e["account"], e["action"], e["size"]) for e in auditing.access_log(sha256=candidate)] == [
        (account(2).address, "get-ballots", 4),
        (member.address, "put-ballot", 4),
    ]
    for store in (other, client, auditing):
        store.close()


def test_the_memory_replay_store_forgets_expired_nonces_in_expiry_order() -> None:
    now = [1000.0]
    store = MemoryReplayStore(clock=lambda: now[0])
    for i in range(1000):  # expiries out of insertion order, as clients' clocks differ
        assert store.claim("0xA", f"n{i}", 1000.0 + (i * 7919) % 300)
    assert not store.claim("0xA", "n5", 2000.0)  # a replay within its window

    now[0] = 1150.0
    assert store.claim("0xB", "late", 1450.0)
    remembered = len(store)

    assert remembered == 1 + sum(1 for i in range(1000) if 1000.0 + (i * 7919) % 300 >= 1150.0)
    assert store.claim("0xA", "n0", 1450.0)  # n0 expired at 1000: forgotten, a stale copy is refused elsewhere


def test_a_service_on_every_interface_must_say_its_public_url() -> None:
    everywhere = ServerSection(host="0.0.0.0", port=8700)

    with pytest.raises(ConfigError, match=r"listens on 0\.0\.0\.0:8700.*set public_url"):
        service_url(None, everywhere)
    assert service_url("https://vault.hospital.example", everywhere) == "https://vault.hospital.example"
    assert service_url(None, ServerSection(host="127.0.0.1", port=8700)) == "http://127.0.0.1:8700"
