"""Encrypted X25519 key files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tclearn.errors import AuthError, ConfigError, NotFoundError
from tclearn.vault.envelope import public_bytes
from tclearn.vault.keys import PASSWORD_ENV, generate_key, key_password, load_key, save_key


def test_save_and_load(tmp_path: Path) -> None:
    key = generate_key()
    public = save_key(tmp_path / "member.key", key, b"s3cret")

    assert b"ENCRYPTED" in (tmp_path / "member.key").read_bytes()
    assert public_bytes(load_key(tmp_path / "member.key", b"s3cret")) == public == public_bytes(key)


def test_wrong_password(tmp_path: Path) -> None:
    save_key(tmp_path / "k", generate_key(), b"right")
    with pytest.raises(AuthError, match="wrong password"):
        load_key(tmp_path / "k", b"wrong")


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
