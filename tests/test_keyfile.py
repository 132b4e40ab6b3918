"""The one at-rest key format: a keystore v3 JSON under scrypt, written whole, mode 0600, never overwritten."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tclearn import keyfile
from tclearn.errors import AuthError, ConfigError, NotFoundError

SECRET = bytes(range(1, 33))


def test_round_trip_records_scrypt_and_its_parameters(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyfile.write_key(path, SECRET, b"pw", "x25519")

    document = json.loads(path.read_text())
    assert document["version"] == 3 and document["kind"] == "x25519" and "address" not in document
    assert document["crypto"]["kdf"] == "scrypt"
    params = document["crypto"]["kdfparams"]
    assert (params["n"], params["r"], params["p"], params["dklen"]) == (2**18, 8, 1, 32)
    assert len(bytes.fromhex(params["salt"])) == 16
    assert SECRET.hex() not in path.read_text()
    assert keyfile.read_key(path, "pw", "x25519") == SECRET  # str and bytes passwords are the same password


def test_the_kdf_ignores_eth_accounts_environment_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETH_ACCOUNT_KDF", "pbkdf2")
    keyfile.write_key(tmp_path / "k.json", SECRET, "pw", None)
    assert json.loads((tmp_path / "k.json").read_text())["crypto"]["kdf"] == "scrypt"


def test_an_account_keystore_is_the_standard_document(tmp_path: Path) -> None:
    from eth_account import Account

    path = tmp_path / "a.json"
    keyfile.write_key(path, SECRET, "pw", None, "keystore")
    document = json.loads(path.read_text())
    assert "kind" not in document
    assert document["address"].lower() == Account.from_key(SECRET).address[2:].lower()
    assert bytes(Account.decrypt(document, "pw")) == SECRET  # any wallet opens it


def test_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "k.json"
    keyfile.write_key(path, SECRET, "pw", "x25519")
    before = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600

    with pytest.raises(ConfigError, match=r"k\.json.*already exists"):
        keyfile.write_key(path, SECRET[::-1], "other", "x25519")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["k.json"], "a temporary file was left behind"


def test_replace_swaps_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"old")
    path.chmod(0o644)
    keyfile.replace(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["k"]


def test_wrong_password_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "member.key"
    keyfile.write_key(path, SECRET, "right", "x25519")
    with pytest.raises(AuthError, match=r"wrong password for key file .*member\.key"):
        keyfile.read_key(path, "wrong", "x25519")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01binary", r"not a keystore \(not JSON\)"),
        (b"[1, 2]", "not a keystore: it has no .crypto. section"),
        (b'{"crypto": {"kdf": "scrypt"}, "version": 3, "kind": "x25519"}', "not a valid keystore"),
    ],
)
def test_a_file_that_is_not_a_key_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"junk\.key.*{message}|{message}.*junk\.key"):
        keyfile.read_key(path, "pw", "x25519")


def test_a_damaged_ciphertext_is_not_taken_for_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyfile.write_key(path, SECRET, "pw", "x25519")
    document = json.loads(path.read_text())
    document["crypto"]["ciphertext"] = "00" * 32
    path.write_text(json.dumps(document))
    with pytest.raises(AuthError, match="wrong password"):  # the MAC covers the ciphertext
        keyfile.read_key(path, "pw", "x25519")


def test_a_key_of_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    keyfile.write_key(tmp_path / "account.json", SECRET, "pw", None)
    keyfile.write_key(tmp_path / "member.key", SECRET, "pw", "x25519")
    with pytest.raises(ConfigError, match="holds an Ethereum account key, not a key of kind 'x25519'"):
        keyfile.read_key(tmp_path / "account.json", "pw", "x25519")
    with pytest.raises(ConfigError, match="holds a key of kind 'x25519', not an Ethereum account key"):
        keyfile.read_key(tmp_path / "member.key", "pw", None)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        keyfile.write_key(tmp_path / "k", SECRET, "", None)
    with pytest.raises(ConfigError, match="32 bytes, got 31"):
        keyfile.write_key(tmp_path / "k", SECRET[:31], "pw", None)
    with pytest.raises(NotFoundError, match="does not exist"):
        keyfile.read_key(tmp_path / "missing", "pw", None)
    assert not (tmp_path / "k").exists()
    with pytest.raises(ConfigError, match="not a valid secp256k1 scalar"):
        keyfile.write_key(tmp_path / "k", bytes(32), "pw", "x25519")
    assert not (tmp_path / "k").exists()


def test_a_file_system_without_hard_links_still_gets_whole_new_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    keyfile.write_new(tmp_path / "k", b"first")
    with pytest.raises(ConfigError, match="already exists"):
        keyfile.write_new(tmp_path / "k", b"second")
    assert (tmp_path / "k").read_bytes() == b"first" and (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["k"]


def test_a_failed_rename_leaves_no_empty_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    def full_disk(source: object, target: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        keyfile.write_new(tmp_path / "k", b"first")

    assert os.listdir(tmp_path) == []  # a later write is not refused as "already exists"
