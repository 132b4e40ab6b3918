"""Variant B envelope encryption: sealed model blobs and the keyring of wrapped data keys beside them.

The blob whose sha256 goes on chain is the chunked AES-256-GCM ciphertext (`cipher.py`) under a fresh
32-byte data key. The data key is wrapped once per recipient: an ephemeral X25519 key agreement with
the recipient's registered key, HKDF-SHA256 to a key-encryption key, and AES-GCM with the model hash as
associated data. Wraps live in a keyring beside the blob, so a member who joins later is granted past
models by adding a wrap, without changing the committed hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tclearn.errors import AccessDenied, AuthError, ConflictError, IntegrityError
from tclearn.vault.cipher import DEFAULT_CHUNK, decrypt_stream, encrypt_stream
from tclearn.vault.directory import MemberDirectory, checksum
from tclearn.vault.store import BlobStore, check_sha256

WRAP_INFO = b"tclearn-vault-wrap-v1"
KEYRING_VERSION = 1


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=WRAP_INFO).derive(shared)


@dataclass(frozen=True)
class Wrap:
    """The data key of one model, encrypted for one recipient's X25519 key."""

    recipient_key: bytes
    ephemeral_key: bytes
    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "recipient_key": self.recipient_key.hex(),
            "ephemeral_key": self.ephemeral_key.hex(),
            "nonce": self.nonce.hex(),
            "ciphertext": self.ciphertext.hex(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> Wrap:
        try:
            return cls(*(bytes.fromhex(data[k]) for k in ("recipient_key", "ephemeral_key", "nonce", "ciphertext")))
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(f"malformed key wrap: {exc!r}") from None


def wrap_key(data_key: bytes, recipient_key: bytes, model_hash: str) -> Wrap:
    """Encrypt `data_key` for the holder of the X25519 private key behind `recipient_key`."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_key))
    nonce = os.urandom(12)
    sealed = AESGCM(_kek(shared, ephemeral_pub, recipient_key)).encrypt(
        nonce, data_key, bytes.fromhex(check_sha256(model_hash))
    )
    return Wrap(recipient_key, ephemeral_pub, nonce, sealed)


def unwrap_key(wrap: Wrap, private: X25519PrivateKey, model_hash: str) -> bytes:
    """The data key inside `wrap`; raises `AuthError` for a wrong key or a wrap of another model."""
    mine = public_bytes(private)
    if mine != wrap.recipient_key:
        raise AuthError(
            f"wrong key: this wrap is for X25519 key {wrap.recipient_key.hex()[:16]}..., yours is {mine.hex()[:16]}..."
        )
    shared = private.exchange(X25519PublicKey.from_public_bytes(wrap.ephemeral_key))
    try:
        return AESGCM(_kek(shared, wrap.ephemeral_key, mine)).decrypt(
            wrap.nonce, wrap.ciphertext, bytes.fromhex(check_sha256(model_hash))
        )
    except InvalidTag:
        raise AuthError(f"key wrap does not open for model {model_hash}: it was made for another model") from None


@dataclass
class Keyring:
    """Every wrap of one model's data key, by checksum address of the recipient."""

    model_hash: str
    wraps: dict[str, Wrap] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body = {
            "version": KEYRING_VERSION,
            "model_hash": self.model_hash,
            "wraps": {address: wrap.to_json() for address, wrap in sorted(self.wraps.items())},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, model_hash: str) -> Keyring:
        try:
            body = json.loads(data)
            version, declared, wraps = body["version"], body["model_hash"], body["wraps"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"keyring of model {model_hash} is malformed: {exc!r}") from None
        if version != KEYRING_VERSION:
            raise IntegrityError(f"keyring of model {model_hash} has unsupported version {version!r}")
        if declared != model_hash:
            raise IntegrityError(f"keyring declares model {declared}, expected {model_hash}")
        return cls(model_hash, {checksum(a): Wrap.from_json(w) for a, w in wraps.items()})

    def merged(self, other: Keyring) -> Keyring:
        """Union of both keyrings; a recipient wrapped differently in both is a `ConflictError`."""
        if other.model_hash != self.model_hash:
            raise IntegrityError(f"cannot merge keyrings of models {self.model_hash} and {other.model_hash}")
        wraps = dict(self.wraps)
        for address, wrap in other.wraps.items():
            if wraps.setdefault(address, wrap) != wrap:
                raise ConflictError(
                    f"keyring of model {self.model_hash} already holds another wrap for {address}",
                    address=address,
                )
        return Keyring(self.model_hash, wraps)


def recipients_of(directory: MemberDirectory) -> dict[str, bytes]:
    """The active members' registered X25519 keys: who a new model is sealed for."""
    return {checksum(address): key for address, key in directory.encryption_keys().items()}


def load_keyring(store: BlobStore, model_hash: str) -> Keyring:
    document = store.read_keyring(model_hash)
    return Keyring(model_hash) if document is None else Keyring.from_bytes(document, model_hash)


def add_wraps(store: BlobStore, keyring: Keyring) -> Keyring:
    """Merge `keyring` into the one stored beside its blob and store the result."""
    merged = load_keyring(store, keyring.model_hash).merged(keyring)
    store.write_keyring(keyring.model_hash, merged.to_bytes())
    return merged


def seal(
    store: BlobStore,
    plaintext: Iterable[bytes],
    recipients: Mapping[str, bytes],
    chunk_size: int = DEFAULT_CHUNK,
) -> str:
    """Encrypt `plaintext` into `store` for `recipients`; returns the model hash (of the ciphertext)."""
    if not recipients:
        raise AccessDenied("no recipient has an encryption key registered: nobody could read this model")
    data_key = AESGCM.generate_key(bit_length=256)
    model_hash = store.put_stream(encrypt_stream(plaintext, data_key, chunk_size))
    wraps = {checksum(a): wrap_key(data_key, key, model_hash) for a, key in recipients.items()}
    add_wraps(store, Keyring(model_hash, wraps))
    return model_hash


def data_key_for(store: BlobStore, model_hash: str, address: str, private: X25519PrivateKey) -> bytes:
    """Unwrap the data key of `model_hash` for `address`; `AccessDenied` if it is no recipient."""
    wrap = load_keyring(store, model_hash).wraps.get(checksum(address))
    if wrap is None:
        raise AccessDenied(f"{checksum(address)} is not a recipient of model {model_hash}", address=address)
    return unwrap_key(wrap, private, model_hash)


def unseal(store: BlobStore, model_hash: str, address: str, private: X25519PrivateKey) -> Iterator[bytes]:
    """Stream the plaintext of a sealed model; the ciphertext is re-hashed and authenticated."""
    data_key = data_key_for(store, model_hash, address, private)
    return decrypt_stream(store.iter_blob(model_hash), data_key)


def grant(
    store: BlobStore,
    model_hash: str,
    address: str,
    private: X25519PrivateKey,
    recipients: Mapping[str, bytes],
) -> Keyring:
    """As a recipient of `model_hash`, add wraps for `recipients` (e.g. a member who joined later)."""
    data_key = data_key_for(store, model_hash, address, private)
    current = load_keyring(store, model_hash)
    new = {checksum(a): k for a, k in recipients.items() if checksum(a) not in current.wraps}
    wraps = {a: wrap_key(data_key, key, model_hash) for a, key in new.items()}
    return add_wraps(store, Keyring(model_hash, wraps))
