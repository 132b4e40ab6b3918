"""The one canonical JSON encoding of the tree: every document whose hash goes on chain, every signed body
and every hashed config is encoded here, so that two writers of the same value always produce the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tclearn.errors import IntegrityError


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no spaces and no NaN or infinity: one byte string per value."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise IntegrityError(f"value is not canonical JSON: {exc}") from None
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """Hex sha256 of the canonical JSON of `value`."""
    return sha256_hex(canonical_json(value))
