"""Encrypted X25519 key files: the keystore format, and old PKCS#8 PEM files migrated when opened."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn import keyfile
from tclearn.errors import AuthError, ConfigError, NotFoundError
from tclearn.ledger.accounts import new_account, save_keystore
from tclearn.vault.envelope import public_bytes
from tclearn.vault.keys import PASSWORD_ENV, generate_key, key_password, load_key, save_key


def old_pem_file(path: Path, key: X25519PrivateKey, password: bytes) -> None:
    """A key file as the first format wrote it: PKCS#8 PEM under `BestAvailableEncryption`, mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def test_save_and_load(tmp_path: Path) -> None:
    key = generate_key()
    public = save_key(tmp_path / "member.key", key, b"s3cret")

    document = json.loads((tmp_path / "member.key").read_text())
    assert document["kind"] == "x25519" and document["crypto"]["kdf"] == "scrypt"
    assert document["crypto"]["kdfparams"]["n"] == 2**18
    assert (tmp_path / "member.key").stat().st_mode & 0o777 == 0o600
    assert public_bytes(load_key(tmp_path / "member.key", b"s3cret")) == public == public_bytes(key)


def test_an_old_pem_file_is_migrated_when_opened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, key = tmp_path / "member.key", generate_key()
    old_pem_file(path, key, b"s3cret")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    with caplog.at_level(logging.WARNING, logger="tclearn.vault.keys"):
        opened = load_key(path, b"s3cret")

    assert public_bytes(opened) == public_bytes(key)
    document = json.loads(path.read_text())  # the file on disk is now a keystore
    assert document["kind"] == "x25519" and document["crypto"]["kdf"] == "scrypt"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["member.key"]
    assert "migrated from PKCS#8 PEM" in caplog.text and str(path) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tclearn.vault.keys"):
        assert public_bytes(load_key(path, b"s3cret")) == public_bytes(key)  # and opens as one, the same key
    assert caplog.text == ""


def test_an_old_pem_file_with_a_wrong_password_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "member.key"
    old_pem_file(path, generate_key(), b"right")
    before = path.read_bytes()
    with pytest.raises(AuthError, match=r"member\.key.*wrong password"):
        load_key(path, b"wrong")
    assert path.read_bytes() == before


def test_an_old_pem_file_that_cannot_be_rewritten_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, key = tmp_path / "member.key", generate_key()
    old_pem_file(path, key, b"pw")
    before = path.read_bytes()

    def read_only_mount(target: Path, data: bytes) -> None:  # what a `:ro` mount answers (root writes a 0500 folder)
        raise OSError(30, "Read-only file system", str(target))

    monkeypatch.setattr(keyfile, "replace", read_only_mount)
    with caplog.at_level(logging.WARNING, logger="tclearn.vault.keys"):
        assert public_bytes(load_key(path, b"pw")) == public_bytes(key)
    assert path.read_bytes() == before and "could not be migrated: [Errno 30] Read-only file system" in caplog.text


def test_wrong_password(tmp_path: Path) -> None:
    save_key(tmp_path / "k", generate_key(), b"right")
    with pytest.raises(AuthError, match=r"wrong password for key file .*/k"):
        load_key(tmp_path / "k", b"wrong")


@pytest.mark.parametrize(
    "content",
    [b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b'{"version": 3}'],
)
def test_a_file_that_is_not_a_key_is_named(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "junk.key").write_bytes(content)
    with pytest.raises(ConfigError, match=r"junk\.key"):
        load_key(tmp_path / "junk.key", b"pw")


def test_an_account_keystore_is_not_a_member_key(tmp_path: Path) -> None:
    save_keystore(new_account(), tmp_path / "account.json", "pw")
    with pytest.raises(ConfigError, match=r"account\.json' holds an Ethereum account key, not a key of kind 'x25519'"):
        load_key(tmp_path / "account.json", b"pw")


def test_no_overwrite_and_missing_file(tmp_path: Path) -> None:
    save_key(tmp_path / "k", generate_key(), b"pw")
    with pytest.raises(ConfigError, match="already exists"):
        save_key(tmp_path / "k", generate_key(), b"pw")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_key(tmp_path / "nope", b"pw")


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert key_password() == b"from-env"
    monkeypatch.setenv(PASSWORD_ENV, "")
    with pytest.raises(ConfigError, match="empty key password"):
        key_password()
