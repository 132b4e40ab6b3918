"""Models and JSON documents in the vault, as each variant stores them.

A: the model blob is the deterministic safetensors encoding. B: it is the chunked AES-GCM ciphertext of
that encoding, with the data key wrapped for every active member (the hash on chain is the ciphertext's).
Metadata, integrity reports and vote evidence are canonical JSON blobs whose sha256 goes on chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from tclearn.coalition.context import Coalition, Hospital
from tclearn.errors import IntegrityError
from tclearn.learning.models import build_model
from tclearn.types import Variant
from tclearn.vault.codec import architecture_of, canonical_json, decode_model, encode_model
from tclearn.vault.envelope import seal, unseal
from tclearn.vault.store import BlobStore

StateDict = dict[str, torch.Tensor]


def recipients(co: Coalition) -> dict[str, bytes]:
    if co.directory is not None:
        return co.directory.encryption_keys()
    from tclearn.vault.envelope import public_bytes

    return {h.address: public_bytes(h.key) for h in co.hospitals}


def put_model(store: BlobStore, variant: Variant, weights: StateDict, readers: Mapping[str, bytes]) -> str:
    """Stores `weights` as `variant` requires (B: sealed for `readers`' X25519 keys); returns the model hash."""
    encoded = encode_model(weights)
    return seal(store, [encoded], readers) if variant is Variant.B else store.put(encoded)


def store_model(co: Coalition, weights: StateDict) -> str:
    """Stores `weights` for the coalition's active members; returns the on-chain model hash (hex)."""
    with co.clock("crypto" if co.variant is Variant.B else "vault"):
        return put_model(co.store, co.variant, weights, recipients(co))


def load_model(co: Coalition, reader: Hospital, model_hash: str) -> StateDict:
    """The weights of `model_hash` as `reader` can open them, checked against the coalition's architecture.

    Raises `IntegrityError` (wrong hash, undecryptable, wrong tensors, non-finite values) or `NotFoundError`.
    """
    if co.variant is Variant.B:
        with co.clock("crypto"):
            encoded = b"".join(unseal(co.store, model_hash, reader.address, reader.key))
    else:
        with co.clock("vault"):
            encoded = co.store.get(model_hash)
    with co.clock("vault"):
        return decode_model(encoded, architecture_of(build_model(co.model).state_dict()))


def put_json(co: Coalition, document: dict[str, Any]) -> str:
    with co.clock("vault"):
        return co.store.put(canonical_json(document))


def get_json(co: Coalition, sha256: str) -> dict[str, Any]:
    with co.clock("vault"):
        raw = co.store.get(sha256)
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IntegrityError(f"blob {sha256} is not JSON") from None
    if not isinstance(document, dict):
        raise IntegrityError(f"blob {sha256} is not a JSON object")
    return document
