"""The supervisor's CKKS keys: made once, secret context kept encrypted at rest, public context published.

The secret key file holds the secret context (parameters, secret and public keys; the Galois keys are
left out, the supervisor only encrypts and decrypts) and the hash of the public context published with
it, encrypted with AES-256-GCM (`tclearn.vault.cipher`) under a random 32-byte file key. The file key is kept
in the file's header in tclearn's one at-rest key format (`tclearn.keyfile`: a keystore v3 JSON, scrypt, under
the password in `TCLEARN_KEY_PASSWORD` or a prompt), so the header records the KDF and its parameters:

    b"TCHEKEY2" | header length u32 | header JSON {"file_key": keystore} | AES-256-GCM stream of
    (context-header length u32 | context header JSON {"context", "params"} | secret context)

Files of the first format (`TCHEKEY1`: a salt, then the stream under scrypt n=2**15, r=8, p=1 with nothing in
the file saying so) are still read, and rewritten in place in the new format once the password has opened them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import tenseal as ts
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tclearn import keyfile
from tclearn.errors import AuthError, ConfigError, IntegrityError
from tclearn.he.context import DEFAULT_PARAMS, CKKSParams, HEContext, context_hash, new_secret_context
from tclearn.he.context import public_context_bytes as public_bytes_of
from tclearn.vault.cipher import decrypt_stream, encrypt_stream
from tclearn.vault.store import BlobStore

MAGIC = b"TCHEKEY2"
LEGACY_MAGIC = b"TCHEKEY1"
LEGACY_SALT_BYTES = 16
KIND = "ckks-file-key"
WHAT = "supervisor key file"
LENGTH_BYTES = 4

log = logging.getLogger(__name__)


def generate(params: CKKSParams = DEFAULT_PARAMS) -> tuple[HEContext, bytes]:
    """A new secret context and the public context bytes to publish."""
    context = new_secret_context(params)
    public = public_bytes_of(context)
    return HEContext(context, context_hash(public), params), public


def save_secret(path: str | Path, he: HEContext, password: bytes) -> None:
    """Write the secret context encrypted under `password` (mode 0600, never overwriting a file)."""
    if not he.can_decrypt:
        raise ConfigError("only a context holding the secret key can be saved as a supervisor key file")
    keyfile.ensure_absent(path, WHAT)
    secret = he.context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    header = json.dumps({"context": he.hash, "params": he.params.to_json()}).encode()
    keyfile.write_new(path, _encode(_framed(header) + bytes(secret), password), WHAT)


def load_secret(path: str | Path, password: bytes) -> HEContext:
    """The supervisor's secret context; `AuthError` on a wrong password, `ConfigError` on a file that is not a
    supervisor key file. A file of the first format is migrated to the current one once opened."""
    target = Path(path)
    data = keyfile.read_bytes(target, WHAT)
    if data.startswith(LEGACY_MAGIC):
        plain = _open_legacy(target, data, password)
        _migrate(target, plain, password)
    elif data.startswith(MAGIC):
        plain = _open(target, data, password)
    else:
        raise ConfigError(f"{str(target)!r} is not a supervisor key file")
    return _context(target, plain)


def _framed(data: bytes) -> bytes:
    return len(data).to_bytes(LENGTH_BYTES, "big") + data


def _unframed(data: bytes, what: str, path: Path) -> tuple[bytes, bytes]:
    """(the length-prefixed piece at the start of `data`, the rest)."""
    size = int.from_bytes(data[:LENGTH_BYTES], "big")
    if len(data) < LENGTH_BYTES + size:
        raise ConfigError(f"supervisor key file {str(path)!r} is damaged: its {what} is cut short")
    return data[LENGTH_BYTES : LENGTH_BYTES + size], data[LENGTH_BYTES + size :]


def _encode(plain: bytes, password: bytes) -> bytes:
    """The current format: a fresh file key sealed under `password` in the header, `plain` encrypted under it."""
    file_key = os.urandom(keyfile.SECRET_BYTES)
    header = json.dumps({"file_key": keyfile.seal(file_key, password, KIND)}, sort_keys=True).encode()
    return MAGIC + _framed(header) + b"".join(encrypt_stream([plain], file_key))


def _file_key_document(path: Path, data: bytes) -> tuple[Any, bytes]:
    """(the file key's keystore document, the encrypted body) of a current-format file."""
    header, body = _unframed(data[len(MAGIC) :], "header", path)
    document = keyfile.parse(header, path, WHAT)
    if not isinstance(document, dict) or "file_key" not in document:
        raise ConfigError(f"supervisor key file {str(path)!r} is damaged: its header has no file key")
    return document["file_key"], body


def _open(path: Path, data: bytes, password: bytes) -> bytes:
    document, body = _file_key_document(path, data)
    file_key = keyfile.unseal(document, password, path, KIND, WHAT)
    try:
        return b"".join(decrypt_stream([body], file_key))
    except IntegrityError as exc:
        raise ConfigError(f"supervisor key file {str(path)!r} is damaged: {exc}") from None


def _open_legacy(path: Path, data: bytes, password: bytes) -> bytes:
    """The plaintext of a first-format file: scrypt (n=2**15, r=8, p=1) of the password and the salt after the
    magic is the AES-256-GCM key, and a wrong password and a damaged file look alike."""
    salt = data[len(LEGACY_MAGIC) : len(LEGACY_MAGIC) + LEGACY_SALT_BYTES]
    key = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(password)
    try:
        return b"".join(decrypt_stream([data[len(LEGACY_MAGIC) + LEGACY_SALT_BYTES :]], key))
    except IntegrityError:
        raise AuthError(f"cannot decrypt supervisor key file {str(path)!r}: wrong password or damaged file") from None


def _migrate(path: Path, plain: bytes, password: bytes) -> None:
    """Rewrite an opened first-format file in the current format; one that cannot be rewritten (a read-only
    mount) still opens, in its old format, with a warning."""
    try:
        keyfile.replace(path, _encode(plain, password))
    except OSError as exc:
        log.warning("supervisor key file %s is in the first format and could not be migrated: %s", path, exc)
        return
    log.warning("supervisor key file %s: migrated to the format that records its KDF (scrypt)", path)


def _context(path: Path, plain: bytes) -> HEContext:
    header, secret = _unframed(plain, "context header", path)
    try:
        fields = json.loads(header)
        params = CKKSParams(
            fields["params"]["poly_modulus_degree"],
            tuple(fields["params"]["coeff_mod_bit_sizes"]),
            fields["params"]["scale_bits"],
        )
        context_hash_hex = str(fields["context"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"supervisor key file {str(path)!r} is damaged: bad context header ({exc})") from None
    context = ts.context_from(secret)
    context.global_scale = 2.0**params.scale_bits
    return HEContext(context, context_hash_hex, params)


def publish_context(store: BlobStore, public_bytes: bytes) -> str:
    """Store the public context in the vault; returns its hash (the supervisor's on-chain key)."""
    return store.put(public_bytes)


def fetch_context(store: BlobStore, context_hash_hex: str, params: CKKSParams = DEFAULT_PARAMS) -> HEContext:
    """The public context a member computes with, checked against its hash by the store."""
    return HEContext.from_public(store.get(context_hash_hex), params)


def key_bytes32(context_hash_hex: str) -> bytes:
    """The context hash as the 32-byte encryption key registered on chain (`setEncryptionKey`)."""
    return bytes.fromhex(context_hash_hex)
