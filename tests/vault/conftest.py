"""Fixtures of the vault suite: member accounts, a directory, stores, a live vault service and a local S3."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI

from services.vault.app import create_app
from tclearn.ledger.localchain import free_port
from tclearn.state.db import Database
from tclearn.vault.audience import Audience
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.http import HttpStore
from tclearn.vault.store import BlobStore, FsspecStore

SMALL_LIMIT = 1 << 20  # 1 MiB: lets the suite test the size limit without big blobs


def account(index: int) -> LocalAccount:
    return Account.from_key(index.to_bytes(32, "big"))


@pytest.fixture
def small_limit() -> int:
    return SMALL_LIMIT


@pytest.fixture
def member() -> LocalAccount:
    return account(1)


@pytest.fixture
def outsider() -> LocalAccount:
    return account(99)


@pytest.fixture
def auditor() -> LocalAccount:
    """Not a member: listed in the live vaults' `auditors`."""
    return account(3)


@pytest.fixture
def directory(member: LocalAccount) -> StaticDirectory:
    return StaticDirectory({member.address: None, account(2).address: None})


@dataclass
class LiveVault:
    url: str
    store: FsspecStore
    db: Database
    directory: StaticDirectory


@contextmanager
def serve_app(app: FastAPI | Callable[[str], FastAPI], *, port: int | None = None, **config: Any) -> Iterator[str]:
    """Serves `app` with uvicorn on loopback (in a thread; `port`, else a free one) and yields its URL. `app` may
    be a function of that URL, for a service that must know the URL its clients sign requests for; `config`
    goes to uvicorn (default: warnings only)."""
    port = port or free_port()
    if not isinstance(app, FastAPI):
        app = app(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("vault test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_vault(tmp_path: Path, directory: StaticDirectory) -> Iterator[LiveVault]:
    store = FsspecStore(f"file://{tmp_path}/server-store", max_bytes=SMALL_LIMIT)
    db = Database(f"sqlite:///{tmp_path}/access.db")
    auditors = [account(3).address]
    with serve_app(lambda url: create_app(store, db, directory, Audience.of(url), auditors=auditors)) as url:
        yield LiveVault(url, store, db, directory)
    db.dispose()


@pytest.fixture
def public_vault(tmp_path: Path, directory: StaticDirectory) -> Iterator[LiveVault]:
    store = FsspecStore(f"file://{tmp_path}/public-store", max_bytes=SMALL_LIMIT)
    db = Database(f"sqlite:///{tmp_path}/public-access.db")
    with serve_app(lambda url: create_app(store, db, directory, Audience.of(url), public_reads=True)) as url:
        yield LiveVault(url, store, db, directory)
    db.dispose()


@dataclass(frozen=True)
class LocalS3:
    """moto's S3 server on a loopback port, with one bucket; every store gets a prefix of its own."""

    endpoint: str
    bucket: str

    def options(self, **overrides: Any) -> dict[str, Any]:
        """s3fs options for this server: explicit test credentials, so no AWS setting of the machine counts."""
        options: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "eu-west-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}},
        }
        return options | overrides

    def url(self) -> str:
        return f"s3://{self.bucket}/{uuid.uuid4().hex}"

    def store(self, max_bytes: int = SMALL_LIMIT) -> FsspecStore:
        return FsspecStore(self.url(), max_bytes, self.options())


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    from moto.server import ThreadedMotoServer  # the dev extra; imported here so other suites do not need it

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = LocalS3(f"http://127.0.0.1:{port}", "tclearn-vault-test")
    try:
        fsspec.filesystem("s3", **s3.options()).mkdir(s3.bucket)
        yield s3
    finally:
        server.stop()


@dataclass
class StoreCase:
    """A store under test plus the fsspec store that really holds its bytes (to tamper with)."""

    store: BlobStore
    backing: FsspecStore


@pytest.fixture(params=["memory", "file", "s3", "http"])
def case(request: pytest.FixtureRequest, tmp_path: Path, member: LocalAccount) -> Iterator[StoreCase]:
    if request.param == "memory":
        store = FsspecStore(f"memory://vault-{uuid.uuid4().hex}", max_bytes=SMALL_LIMIT)
        yield StoreCase(store, store)
    elif request.param == "file":
        store = FsspecStore(f"file://{tmp_path}/store", max_bytes=SMALL_LIMIT)
        yield StoreCase(store, store)
    elif request.param == "s3":
        local_s3: LocalS3 = request.getfixturevalue("local_s3")
        store = local_s3.store()
        yield StoreCase(store, store)
    else:
        live: LiveVault = request.getfixturevalue("live_vault")
        client = HttpStore(live.url, member.key, max_bytes=SMALL_LIMIT)
        yield StoreCase(client, live.store)
        client.close()
