"""The one at-rest format for the 32-byte secrets tclearn keeps on disk: an Ethereum keystore v3 JSON (scrypt).

Signing accounts (`tclearn.ledger.accounts`), member X25519 keys (`tclearn.vault.keys`) and the file key of the
supervisor's CKKS key file (`tclearn.he.keys`) are all sealed by `seal` and opened by `unseal`, through
eth-account's keystore code: scrypt derives a key from the password, AES-128-CTR encrypts the secret and a
keccak MAC over the derived key and the ciphertext tells a wrong password. The KDF and its parameters are in the
file (`crypto.kdf`, `crypto.kdfparams`: n, r, p, salt, dklen), so a file says how to open itself. The parameters
are eth-account's defaults, written down here so that its `ETH_ACCOUNT_KDF` variable or a later default cannot
weaken what tclearn writes.

An account keystore is the standard document (with its `address`), readable by any Ethereum wallet. Any other
secret is marked with its `kind` and carries no `address`: the 32 bytes are not a signing key, and a file of one
kind handed where another is expected is refused by name.

Files are written whole or not at all, mode 0600: to a temporary file beside the target, flushed to disk, then
linked into place (`write_new`, which refuses to overwrite) or renamed over the old file (`replace`, used to
migrate a file in an older format once it has been opened with the right password).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from eth_utils import ValidationError

from tclearn.errors import AuthError, ConfigError, NotFoundError

KDF: Final = "scrypt"
SCRYPT_N = 2**18  # eth-account's (eth-keyfile's) default work factor, as geth's; r = 8, p = 1 come with it: 256 MiB
SECRET_BYTES = 32
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}  # file systems without hard links

Password = str | bytes


def seal(secret: bytes, password: Password, kind: str | None = None) -> dict[str, Any]:
    """`secret` (32 bytes) encrypted under `password` as a keystore v3 document; `kind` None is an account key."""
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"a key file holds {SECRET_BYTES} bytes, got {len(secret)}")
    if not password:
        raise ConfigError("a key file password must not be empty")
    try:
        document: dict[str, Any] = dict(Account.encrypt(secret, _text(password), kdf=KDF, iterations=SCRYPT_N))
    except ValidationError:  # eth-account derives an address: 0 and values past the curve order (odds 2^-128) fail
        raise ConfigError("these 32 bytes are not a valid secp256k1 scalar, which a keystore requires") from None
    if kind is not None:
        del document["address"]  # the Ethereum address of 32 bytes that are not an Ethereum key would mislead
        document["kind"] = kind
    return document


def unseal(document: Any, password: Password, path: Path, kind: str | None = None, what: str = "key file") -> bytes:
    """The secret of a keystore document read from `path`; `AuthError` on a wrong password, `ConfigError` on a
    document that is not a keystore or holds another kind of key."""
    if not isinstance(document, dict) or not ({"crypto", "Crypto"} & document.keys()):
        raise ConfigError(f"{what} {str(path)!r} is not a keystore: it has no 'crypto' section")
    found = document.get("kind")
    if found != kind:
        raise ConfigError(f"{what} {str(path)!r} holds {_kind_name(found)}, not {_kind_name(kind)}")
    try:
        secret = bytes(Account.decrypt(document, _text(password)))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise AuthError(f"wrong password for {what} {str(path)!r}") from None
        raise ConfigError(f"{what} {str(path)!r} is not a valid keystore: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not a valid keystore: missing or malformed {exc}") from None
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"{what} {str(path)!r} is not a valid keystore: it holds {len(secret)} bytes, not 32")
    return secret


def _text(password: Password) -> str:
    """The password as eth-account takes it (it encodes it back to the same UTF-8 bytes)."""
    if isinstance(password, str):
        return password
    try:
        return password.decode()
    except UnicodeDecodeError:
        raise ConfigError("a key file password must be text (UTF-8)") from None


def _kind_name(kind: str | None) -> str:
    return "an Ethereum account key" if kind is None else f"a key of kind {kind!r}"


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def parse(data: bytes, path: Path, what: str = "key file") -> Any:
    """The JSON document in `data` (read from `path`); `ConfigError` naming the file if it is not JSON."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{what} {str(path)!r} is not a keystore (not JSON)") from None


def read_bytes(path: str | Path, what: str = "key file") -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {str(path)!r} is a folder, not a file") from None


def write_key(path: str | Path, secret: bytes, password: Password, kind: str | None, what: str = "key file") -> None:
    """`secret` sealed under `password` into a new file at `path` (mode 0600, never overwriting)."""
    ensure_absent(path, what)
    write_new(path, encode(seal(secret, password, kind)), what)


def ensure_absent(path: str | Path, what: str = "key file") -> None:
    """`ConfigError` if `path` exists: said before the seconds of scrypt (`write_new` still refuses atomically)."""
    if Path(path).exists():
        raise _exists(what, Path(path))


def read_key(path: str | Path, password: Password, kind: str | None, what: str = "key file") -> bytes:
    """The secret in the keystore file at `path`."""
    target = Path(path)
    return unseal(parse(read_bytes(target, what), target, what), password, target, kind, what)


def _temporary(target: Path, data: bytes) -> Path:
    """`data` in a new file beside `target`, mode 0600 (mkstemp's), flushed to disk."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def write_new(path: str | Path, data: bytes, what: str = "key file") -> None:
    """`data` as a new file at `path`, mode 0600: all of it or nothing, and never over an existing file."""
    target = Path(path)
    temporary = _temporary(target, data)
    try:
        _put_new(temporary, target)
    except FileExistsError:
        raise _exists(what, target) from None
    finally:
        temporary.unlink(missing_ok=True)


def _put_new(source: Path, target: Path) -> None:
    """`source` at `target`, or `FileExistsError`: a hard link is both atomic and exclusive; on a file system
    without hard links, the name is claimed exclusively (empty for an instant) and the file renamed over it."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            os.replace(source, target)
        except BaseException:  # no empty placeholder left to be refused as "already exists" ever after
            target.unlink(missing_ok=True)
            raise


def _exists(what: str, target: Path) -> ConfigError:
    return ConfigError(f"{what} {str(target)!r} already exists; refusing to overwrite it")


def replace(path: str | Path, data: bytes) -> None:
    """`data` in place of the file at `path`, atomically (a reader sees the old file or the new one), mode 0600."""
    target = Path(path)
    temporary = _temporary(target, data)
    try:
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
