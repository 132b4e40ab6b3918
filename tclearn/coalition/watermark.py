"""The coalition's watermark in the vault and in the general's check.

The key (`tclearn.learning.watermark.MarkKey`) is stored once, at founding: in clear in variant A, sealed for the
founders in variant B (a member admitted later reads it once a founder grants it the blob, as for any sealed
blob). Its sha256 is in the acceptance policy (`WatermarkPolicy.key`), whose hash is on chain, so whoever reads the
key checks it against that commitment (`read_key`). Variant C has no watermark: its weights are encrypted, and
neither a member's training nor the general could reach them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.coalition.policy import AcceptancePolicy, WatermarkPolicy
from tclearn.errors import ConfigError, IntegrityError, TclearnError
from tclearn.learning.watermark import MarkKey, Reading, StateDict, measure
from tclearn.vault.envelope import seal, unseal
from tclearn.vault.store import BlobStore


def store_key(store: BlobStore, key: MarkKey, readers: Mapping[str, bytes] | None = None) -> str:
    """Stores `key`'s record, in clear or sealed for `readers` (address -> X25519 public key); returns the blob's
    hash (`WatermarkPolicy.blob`)."""
    return store.put(key.encode()) if readers is None else seal(store, [key.encode()], readers)


def read_key(
    store: BlobStore, policy: WatermarkPolicy, reader: str = "", private: X25519PrivateKey | None = None
) -> MarkKey:
    """The coalition's key from the policy's blob (unsealed for `reader` with `private` when given, else read in
    clear), parsed strictly and checked against the policy's commitment; `IntegrityError` otherwise."""
    try:
        raw = store.get(policy.blob) if private is None else b"".join(unseal(store, policy.blob, reader, private))
    except TclearnError as exc:
        raise type(exc)(
            f"cannot open the coalition's watermark key (blob {policy.blob}): {exc}", **exc.details
        ) from None
    key = MarkKey.parse(raw)
    if key.sha256() != policy.key:
        raise IntegrityError(
            f"the watermark key in blob {policy.blob} is not the one the coalition committed to "
            f"(sha256 {policy.key} on chain's policy, {key.sha256()} read)"
        )
    if key.purpose != "coalition":
        raise IntegrityError(f"the key in blob {policy.blob} is a {key.purpose} key, not the coalition's watermark")
    return key


def watermark_problem(reading: Reading, policy: WatermarkPolicy) -> str | None:
    """Why a candidate read as `reading` lost the coalition's watermark (None: within `max_ber`)."""
    if reading.within(policy.max_ber):
        return None
    return (
        f"the candidate lost the coalition's watermark: {reading.errors} of {reading.bits} bits read wrong "
        f"(BER {reading.ber:.3f} > max_ber {policy.max_ber:g})"
    )


def reading_note(reading: Reading) -> str:
    """A reading as the general's report shows it when it passes."""
    return f"BER {reading.ber:.3f} ({reading.errors} of {reading.bits} bits wrong), p {reading.p_value:.2g}"


@dataclass(frozen=True)
class Verification:
    """A model read against the coalition's watermark, and the policy's bound it is judged by."""

    reading: Reading
    max_ber: float

    @property
    def carries(self) -> bool:
        return self.reading.within(self.max_ber)

    @property
    def verdict(self) -> str:
        return f"{'carries' if self.carries else 'does not carry'} the coalition's watermark"

    def to_json(self) -> dict[str, Any]:
        r = self.reading
        return {
            "carries": self.carries,
            "bits": r.bits,
            "errors": r.errors,
            "ber": r.ber,
            "p_value": r.p_value,
            "margin": r.margin,
            "max_ber": self.max_ber,
            "verdict": self.verdict,
        }


def verify(
    store: BlobStore,
    policy: AcceptancePolicy,
    weights: StateDict,
    reader: str = "",
    private: X25519PrivateKey | None = None,
) -> Verification:
    """`weights` read against the watermark key `policy` commits to (read as `read_key` does); a `ConfigError` when
    the policy names no watermark, the `IntegrityError` of `carrier_of` for a model of another architecture."""
    if policy.watermark is None:
        raise ConfigError("the coalition has no watermark: its acceptance policy on chain names none")
    key = read_key(store, policy.watermark, reader, private)
    return Verification(measure(weights, key), policy.watermark.max_ber)
