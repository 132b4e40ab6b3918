"""Member X25519 key files: the key in the one at-rest format of `tclearn.keyfile` (a keystore v3 JSON, scrypt).

The file is marked `"kind": "x25519"`, so an account keystore given as a member key (or the reverse) is refused
by name. Files of the first format, a PKCS#8 PEM under `BestAvailableEncryption` (PBKDF2), are still read: once
the password has opened one, it is rewritten in place in the keystore format (atomically, mode 0600) and a
warning says so. The password comes from `TCLEARN_KEY_PASSWORD` or, when that is unset, an interactive prompt.
"""

from __future__ import annotations

import getpass
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn import keyfile
from tclearn.errors import AuthError, ConfigError

PASSWORD_ENV = "TCLEARN_KEY_PASSWORD"
KIND = "x25519"
WHAT = "key file"
PEM_START = b"-----BEGIN"

log = logging.getLogger(__name__)


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
    """Write `key` encrypted under `password` (mode 0600, refusing to overwrite); returns its public key."""
    keyfile.write_key(path, key.private_bytes_raw(), password, KIND, WHAT)
    return key.public_key().public_bytes_raw()


def load_key(path: str | Path, password: bytes) -> X25519PrivateKey:
    """Read a key file; `AuthError` on a wrong password, `ConfigError` on a file that is not an X25519 key file.
    A file in the old PKCS#8 PEM format is migrated to the keystore format once opened."""
    target = Path(path)
    data = keyfile.read_bytes(target, WHAT)
    if data.lstrip().startswith(PEM_START):
        key = _open_pem(target, data, password)
        _migrate(target, key, password)
        return key
    secret = keyfile.unseal(keyfile.parse(data, target, WHAT), password, target, KIND, WHAT)
    return X25519PrivateKey.from_private_bytes(secret)


def _migrate(path: Path, key: X25519PrivateKey, password: bytes) -> None:
    """Rewrite an opened PEM key file in the keystore format; a file that cannot be rewritten (a read-only
    mount) still opens, in its old format, with a warning."""
    try:
        keyfile.replace(path, keyfile.encode(keyfile.seal(key.private_bytes_raw(), password, KIND)))
    except OSError as exc:
        log.warning("key file %s is in the old PKCS#8 PEM format and could not be migrated: %s", path, exc)
        return
    log.warning("key file %s: migrated from PKCS#8 PEM (PBKDF2) to the scrypt keystore format", path)


def _open_pem(path: Path, pem: bytes, password: bytes) -> X25519PrivateKey:
    """The key in a PKCS#8 PEM file of the first format (encrypted under `password`)."""
    if b"ENCRYPTED" not in pem.split(b"\n", 1)[0]:
        raise ConfigError(f"key file {str(path)!r} is not encrypted; an X25519 key file must be")
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise AuthError(f"cannot decrypt key file {str(path)!r}: wrong password or damaged file") from None
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"key file {str(path)!r} holds a {type(key).__name__}, not an X25519 key")
    return key
