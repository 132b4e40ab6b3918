"""The supervisor's key file records its KDF; files of the first format are opened and migrated."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tclearn.errors import AuthError, ConfigError
from tclearn.he.context import HEContext
from tclearn.he.keys import load_secret, save_secret
from tclearn.vault.cipher import encrypt_stream
from tests.he.conftest import Keys


def header_of(path: Path) -> dict[str, object]:
    """The clear header of a current-format file, read here byte by byte as docs/he.md describes it."""
    data = path.read_bytes()
    assert data[:8] == b"TCHEKEY2"
    size = int.from_bytes(data[8:12], "big")
    header: dict[str, object] = json.loads(data[12 : 12 + size])
    return header


def first_format_file(path: Path, he: HEContext, password: bytes) -> None:
    """A key file as the first format wrote it: magic, salt, the stream under scrypt(n=2**15, r=8, p=1)."""
    secret = he.context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    header = json.dumps({"context": he.hash, "params": he.params.to_json()}).encode()
    plain = len(header).to_bytes(4, "big") + header + bytes(secret)
    salt = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(password)
    path.write_bytes(b"TCHEKEY1" + salt + b"".join(encrypt_stream([plain], key)))
    path.chmod(0o600)


def test_the_file_records_its_kdf(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "ckks.key"
    save_secret(path, keys.secret, b"pw")

    file_key = header_of(path)["file_key"]
    assert isinstance(file_key, dict) and file_key["kind"] == "ckks-file-key"
    assert file_key["crypto"]["kdf"] == "scrypt"
    params = file_key["crypto"]["kdfparams"]
    assert (params["n"], params["r"], params["p"]) == (2**18, 8, 1) and len(params["salt"]) == 32
    assert load_secret(path, b"pw").hash == keys.secret.hash


def test_a_first_format_file_is_migrated_when_opened(
    keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ckks.key"
    first_format_file(path, keys.secret, b"pw")

    with caplog.at_level(logging.WARNING, logger="tclearn.he.keys"):
        opened = load_secret(path, b"pw")

    assert opened.hash == keys.secret.hash and opened.can_decrypt
    assert opened.decrypt(keys.public.encrypt([2.5]))[0] == pytest.approx(2.5, abs=1e-4)
    assert header_of(path)["file_key"]["crypto"]["kdf"] == "scrypt"  # type: ignore[index]
    assert path.stat().st_mode & 0o777 == 0o600 and [p.name for p in tmp_path.iterdir()] == ["ckks.key"]
    assert "migrated" in caplog.text and str(path) in caplog.text
    assert load_secret(path, b"pw").hash == keys.secret.hash  # the same key, now in the current format


def test_a_first_format_file_with_a_wrong_password_is_left_as_it_was(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "ckks.key"
    first_format_file(path, keys.secret, b"right")
    before = path.read_bytes()
    with pytest.raises(AuthError, match=r"ckks\.key.*wrong password"):
        load_secret(path, b"wrong")
    assert path.read_bytes() == before


def test_wrong_password_and_files_that_are_not_key_files(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "ckks.key"
    save_secret(path, keys.secret, b"pw")
    with pytest.raises(AuthError, match=r"wrong password for supervisor key file .*ckks\.key"):
        load_secret(path, b"wrong")

    damaged = tmp_path / "damaged.key"
    data = bytearray(path.read_bytes())
    data[-40] ^= 1  # a bit of the encrypted context
    damaged.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"damaged\.key.* is damaged"):
        load_secret(damaged, b"pw")

    cut = tmp_path / "cut.key"
    cut.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ConfigError, match=r"cut\.key.* is damaged: its header is cut short"):
        load_secret(cut, b"pw")

    other = tmp_path / "other.key"
    other.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ConfigError, match=r"other\.key.* is not a supervisor key file"):
        load_secret(other, b"pw")
