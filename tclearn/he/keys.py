"""The supervisor's CKKS keys: made once, secret context kept encrypted at rest, public context published.

The secret key file holds the secret context (parameters, secret and public keys; the Galois keys are
left out, the supervisor only encrypts and decrypts) and the hash of the public context published with
it. It is encrypted with AES-256-GCM (`tclearn.vault.cipher`) under a key derived by scrypt from the
password in `TCLEARN_KEY_PASSWORD` (or a prompt), like member key files (`tclearn.vault.keys`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tenseal as ts
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tclearn.errors import AuthError, ConfigError, IntegrityError, NotFoundError
from tclearn.he.context import DEFAULT_PARAMS, CKKSParams, HEContext, context_hash, new_secret_context
from tclearn.he.context import public_context_bytes as public_bytes_of
from tclearn.vault.cipher import decrypt_stream, encrypt_stream
from tclearn.vault.store import BlobStore

MAGIC = b"TCHEKEY1"
SALT_BYTES = 16


def _kdf(password: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(password)


def generate(params: CKKSParams = DEFAULT_PARAMS) -> tuple[HEContext, bytes]:
    """A new secret context and the public context bytes to publish."""
    context = new_secret_context(params)
    public = public_bytes_of(context)
    return HEContext(context, context_hash(public), params), public


def save_secret(path: str | Path, he: HEContext, password: bytes) -> None:
    """Write the secret context encrypted under `password` (mode 0600, never overwriting a file)."""
    if not he.can_decrypt:
        raise ConfigError("only a context holding the secret key can be saved as a supervisor key file")
    secret = he.context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    header = json.dumps({"context": he.hash, "params": he.params.to_json()}).encode()
    salt = os.urandom(SALT_BYTES)
    plain = len(header).to_bytes(4, "big") + header + bytes(secret)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "xb", opener=lambda p, f: os.open(p, f, 0o600)) as handle:
            handle.write(MAGIC + salt)
            for chunk in encrypt_stream([plain], _kdf(password, salt)):
                handle.write(chunk)
    except FileExistsError:
        raise ConfigError(f"supervisor key file {str(target)!r} already exists; refusing to overwrite it") from None


def load_secret(path: str | Path, password: bytes) -> HEContext:
    """The supervisor's secret context; `AuthError` on a wrong password."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"supervisor key file {str(path)!r} does not exist") from None
    if not data.startswith(MAGIC):
        raise ConfigError(f"{str(path)!r} is not a supervisor key file")
    salt = data[len(MAGIC) : len(MAGIC) + SALT_BYTES]
    try:
        plain = b"".join(decrypt_stream([data[len(MAGIC) + SALT_BYTES :]], _kdf(password, salt)))
    except IntegrityError:
        raise AuthError(f"cannot decrypt supervisor key file {str(path)!r}: wrong password or damaged file") from None
    size = int.from_bytes(plain[:4], "big")
    header = json.loads(plain[4 : 4 + size])
    params = CKKSParams(
        header["params"]["poly_modulus_degree"],
        tuple(header["params"]["coeff_mod_bit_sizes"]),
        header["params"]["scale_bits"],
    )
    context = ts.context_from(plain[4 + size :])
    context.global_scale = 2.0**params.scale_bits
    return HEContext(context, header["context"], params)


def publish_context(store: BlobStore, public_bytes: bytes) -> str:
    """Store the public context in the vault; returns its hash (the supervisor's on-chain key)."""
    return store.put(public_bytes)


def fetch_context(store: BlobStore, context_hash_hex: str, params: CKKSParams = DEFAULT_PARAMS) -> HEContext:
    """The public context a member computes with, checked against its hash by the store."""
    return HEContext.from_public(store.get(context_hash_hex), params)


def key_bytes32(context_hash_hex: str) -> bytes:
    """The context hash as the 32-byte encryption key registered on chain (`setEncryptionKey`)."""
    return bytes.fromhex(context_hash_hex)
