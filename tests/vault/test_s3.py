"""The vault on S3, against moto's S3 server on loopback (`local_s3`): the service over an S3 store, the
settings and variables that carry the endpoint, multipart uploads, and one clear error when the bucket, the
credentials or the endpoint are wrong. The shared store suite (test_store.py) runs on S3 as well."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import httpx
import pytest
import tomli_w
from eth_account.signers.local import LocalAccount

from services.vault.app import app_for
from tclearn.config import load_settings, settings_from_env
from tclearn.errors import ConfigError, IntegrityError, StorageError
from tclearn.vault.config import VaultSettings
from tclearn.vault.http import HttpStore
from tclearn.vault.store import OBJECT_PART_BYTES, FsspecStore
from tests.vault.conftest import LocalS3, free_port, serve_app


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_uploads(store: FsspecStore) -> list[object]:
    bucket, _, prefix = store.root.partition("/")
    answer = store.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
    return list(answer.get("Uploads", []))


@contextmanager
def credentials_checked(s3: LocalS3) -> Iterator[None]:
    """moto accepts any credentials unless told to check them (from its next request on)."""
    answer = httpx.post(f"{s3.endpoint}/moto-api/reset-auth", content=b"0").json()
    try:
        yield
    finally:
        httpx.post(f"{s3.endpoint}/moto-api/reset-auth", content=str(answer["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]))


def test_vault_service_over_s3_stores_in_the_bucket(tmp_path: Path, local_s3: LocalS3, member: LocalAccount) -> None:
    url = local_s3.url()
    members = tmp_path / "members.json"
    members.write_text(json.dumps({member.address: None}))
    config = tmp_path / "vault.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "store": url,
                "database": f"sqlite:///{tmp_path}/access.db",
                "members": str(members),
                "storage_options": local_s3.options(),
            }
        )
    )
    data = os.urandom(300_000)
    settings = load_settings(VaultSettings, config)

    # the vault's public URL is where the test serves it: members sign their requests for it
    with serve_app(lambda where: app_for(settings.model_copy(update={"public_url": where}))) as vault_url:
        client = HttpStore(vault_url, member.key)
        address = client.put(data)
        fetched = client.get(address)
        size = client.size(address)
        client.close()

    assert (fetched, size) == (data, len(data))
    bucket_fs = fsspec.filesystem("s3", **local_s3.options())
    assert bucket_fs.cat_file(f"{url.removeprefix('s3://')}/blobs/{address[:2]}/{address}") == data


def test_storage_options_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch, local_s3: LocalS3) -> None:
    monkeypatch.delenv("TCLEARN_VAULT_CONFIG", raising=False)
    monkeypatch.setenv("TCLEARN_VAULT_STORE", local_s3.url())
    monkeypatch.setenv("TCLEARN_VAULT_STORAGE_OPTIONS", json.dumps(local_s3.options()))

    settings = settings_from_env(VaultSettings)
    store = FsspecStore(settings.store, settings.max_bytes, settings.storage_options)

    assert settings.storage_options["endpoint_url"] == local_s3.endpoint
    assert store.get(store.put(b"from the environment")) == b"from the environment"


def test_endpoint_and_credentials_from_the_aws_variables(monkeypatch: pytest.MonkeyPatch, local_s3: LocalS3) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL": local_s3.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)

    store = FsspecStore(local_s3.url(), storage_options={"skip_instance_cache": True})

    assert store.get(store.put(b"from AWS_ENDPOINT_URL")) == b"from AWS_ENDPOINT_URL"


def test_blob_larger_than_one_part_is_a_multipart_upload(local_s3: LocalS3) -> None:
    store = local_s3.store(max_bytes=4 * OBJECT_PART_BYTES)
    data = os.urandom(2 * OBJECT_PART_BYTES + 12_345)

    address = store.put_stream(iter([data[:OBJECT_PART_BYTES], data[OBJECT_PART_BYTES:]]), sha(data))

    assert address == sha(data)
    assert store.get(address) == data
    assert open_uploads(store) == []


def test_refused_and_interrupted_uploads_leave_no_object_and_no_open_upload(local_s3: LocalS3) -> None:
    store = local_s3.store(max_bytes=4 * OBJECT_PART_BYTES)
    data = os.urandom(OBJECT_PART_BYTES + 1000)  # past one part: a multipart upload is under way

    def broken() -> Iterator[bytes]:
        yield data
        raise ConnectionError("writer died")

    with pytest.raises(IntegrityError):
        store.put(data, expected=sha(b"something else"))
    with pytest.raises(ConnectionError):
        store.put_stream(broken(), sha(data))

    assert store.fs.find(store.root) == []
    assert open_uploads(store) == []


def test_missing_bucket_is_a_config_error_naming_it(local_s3: LocalS3) -> None:
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        FsspecStore("s3://no-such-bucket/vault", storage_options=local_s3.options())


def test_refused_credentials_are_a_config_error_naming_the_bucket(local_s3: LocalS3) -> None:
    with (
        credentials_checked(local_s3),
        pytest.raises(ConfigError, match=f"bucket '{local_s3.bucket}' refused access.*PermissionError"),
    ):
        FsspecStore(local_s3.url(), storage_options=local_s3.options(key="not-a-key"))


def test_unreachable_endpoint_is_a_config_error_naming_the_bucket(local_s3: LocalS3) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ConfigError, match=f"bucket '{local_s3.bucket}' cannot be used.*{nobody}"):
        FsspecStore(local_s3.url(), storage_options=local_s3.options(endpoint_url=nobody))


def test_storage_failing_after_start_is_a_storage_error(local_s3: LocalS3) -> None:
    bucket_fs = fsspec.filesystem("s3", **local_s3.options())
    bucket_fs.mkdir("short-lived")
    store = FsspecStore("s3://short-lived/vault", storage_options=local_s3.options())
    bucket_fs.rmdir("short-lived")

    with pytest.raises(StorageError, match="s3://short-lived/vault"):
        store.put(b"nowhere to go")


def test_missing_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)  # s3fs never imported
    monkeypatch.setitem(sys.modules, "s3fs", None)

    with pytest.raises(ConfigError, match=r"tclearn\[s3\]"):
        FsspecStore("s3://bucket/vault")
