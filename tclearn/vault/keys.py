"""Member X25519 key files, stored encrypted under a password (PKCS#8 PEM, scrypt + AES).

The password comes from `TCLEARN_KEY_PASSWORD` or, when that is unset, an interactive prompt.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.errors import AuthError, ConfigError, NotFoundError

PASSWORD_ENV = "TCLEARN_KEY_PASSWORD"


def key_password(prompt: str = "Key password: ") -> bytes:
    """The key-file password from the environment, else asked for on the terminal."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = getpass.getpass(prompt)
    if not password:
        raise ConfigError(f"an empty key password is not allowed; set {PASSWORD_ENV} or type one")
    return password.encode()


def generate_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def save_key(path: str | Path, key: X25519PrivateKey, password: bytes) -> bytes:
    """Write `key` encrypted under `password` (refusing to overwrite); returns its public key."""
    target = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "xb", opener=lambda p, f: os.open(p, f, 0o600)) as handle:
            handle.write(pem)
    except FileExistsError:
        raise ConfigError(f"key file {str(target)!r} already exists; refusing to overwrite it") from None
    return key.public_key().public_bytes_raw()


def load_key(path: str | Path, password: bytes) -> X25519PrivateKey:
    """Read an encrypted key file; `AuthError` on a wrong password."""
    try:
        pem = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"key file {str(path)!r} does not exist") from None
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise AuthError(f"cannot decrypt key file {str(path)!r}: wrong password or not a key file") from None
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"key file {str(path)!r} holds a {type(key).__name__}, not an X25519 key")
    return key
