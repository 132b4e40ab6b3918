"""CKKS parameters and contexts (TenSEAL), public contexts and the ciphertexts that travel between parties.

Parameters (`DEFAULT_PARAMS`): polynomial modulus degree N = 8192 (4096 slots per ciphertext), coefficient
modulus primes of 50, 33, 33, 33, 33 and 36 bits (218 bits in all), scale 2^33. The HE security standard
(homomorphicencryption.org, 2018) allows at most 218 bits of coefficient modulus for N = 8192 at 128-bit
classical security; SEAL checks this itself (its default `sec_level_type.tc128`) and refuses, for
instance, 220 bits. The first prime (50 bits) leaves 17 bits above the scale for the decrypted values;
the four 33-bit primes are the multiplicative levels (four rescalings); the last prime (36 bits) is the
special prime used for key switching (relinearisation, rotations).

A context with the secret key exists only at the supervisor. Members get the *public context*: the same
parameters with the public, relinearisation and Galois (rotation) keys and no secret key
(`serialize(save_secret_key=False)`). It is stored in the vault; its sha256 — the context hash — is the
supervisor's key registered on chain, and every ciphertext names the context hash it was made under.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tenseal as ts

from tclearn.errors import ContextMismatch, DepthExhausted, HEError, Overflow, SecretKeyMissing


@dataclass(frozen=True)
class CKKSParams:
    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (50, 33, 33, 33, 33, 36)
    scale_bits: int = 33

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def levels(self) -> int:
        """Multiplications (rescalings) a fresh ciphertext allows."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def max_abs_value(self) -> float:
        """Largest magnitude a decrypted value can have under these parameters."""
        return float(2 ** (self.coeff_mod_bit_sizes[0] - self.scale_bits - 1))

    def to_json(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }


DEFAULT_PARAMS = CKKSParams()
SECURITY_BITS = 128


def new_secret_context(params: CKKSParams = DEFAULT_PARAMS) -> ts.Context:
    """A fresh CKKS context with secret, public, relinearisation and Galois keys (supervisor only)."""
    try:
        context = ts.context(
            ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes)
        )
    except ValueError as exc:
        raise HEError(f"CKKS parameters {params.to_json()} are not valid at 128-bit security: {exc}") from None
    context.global_scale = 2.0**params.scale_bits
    context.generate_galois_keys()
    context.generate_relin_keys()
    return context


def public_context_bytes(context: ts.Context) -> bytes:
    """The context without its secret key, with the keys members need to compute (public, relin, Galois)."""
    return bytes(context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=True))


def context_hash(public_bytes: bytes) -> str:
    return hashlib.sha256(public_bytes).hexdigest()


@dataclass
class HEContext:
    """A TenSEAL context plus the hash of the public context it belongs to."""

    context: ts.Context
    hash: str
    params: CKKSParams = field(default=DEFAULT_PARAMS)

    @property
    def can_decrypt(self) -> bool:
        return bool(self.context.has_secret_key())

    @classmethod
    def from_public(cls, public_bytes: bytes, params: CKKSParams = DEFAULT_PARAMS) -> HEContext:
        """Load a published public context; refuses one that carries a secret key."""
        try:
            context = ts.context_from(public_bytes)
        except Exception as exc:  # TenSEAL raises ValueError/RuntimeError for malformed bytes
            raise HEError(f"not a TenSEAL context ({len(public_bytes)} bytes): {exc}") from None
        if context.has_secret_key():
            raise HEError("a published context must not hold the secret key; publish public_context_bytes()")
        return cls(context, context_hash(public_bytes), params)

    def level(self, vector: ts.CKKSVector) -> int:
        """Multiplicative levels `vector` has left (0: no further multiplication possible)."""
        seal = self.context.seal_context().data
        return int(seal.get_context_data(vector.ciphertext()[0].parms_id()).chain_index())

    def require_level(self, vector: ts.CKKSVector, needed: int, what: str) -> None:
        if (left := self.level(vector)) < needed:
            raise DepthExhausted(
                f"{what} has {left} multiplicative level(s) left but needs {needed}; ask the supervisor to refresh it",
                left=left,
                needed=needed,
            )

    def encrypt(self, values: Sequence[float] | np.ndarray) -> ts.CKKSVector:
        data = np.asarray(values, dtype=np.float64).ravel()
        if not 0 < len(data) <= self.params.slots:
            raise HEError(f"cannot encrypt {len(data)} values: one ciphertext holds 1 to {self.params.slots}")
        self.check_range(data, "cannot encrypt")
        return ts.ckks_vector(self.context, data.tolist())

    def check_range(self, values: np.ndarray, what: str) -> None:
        """`Overflow` naming the first value these parameters cannot hold (non-finite, or |v| >= 2^16)."""
        bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values, nan=np.inf)) >= self.params.max_abs_value)
        if bad.any():
            index = int(np.argmax(bad))
            raise Overflow(
                f"{what}: value {values[index]:.6g} at position {index} (of {len(values)}) is beyond the "
                f"+-{self.params.max_abs_value:g} these CKKS parameters hold",
                position=index,
                value=float(values[index]) if np.isfinite(values[index]) else str(values[index]),
            )

    def decrypt(self, vector: ts.CKKSVector) -> np.ndarray:
        """Plain values of `vector`; only a context holding the secret key can do this."""
        if not self.can_decrypt:
            raise SecretKeyMissing(
                "this is a public CKKS context without the secret key: only the supervisor can decrypt"
            )
        values = np.asarray(vector.decrypt(self.context.secret_key()), dtype=np.float64)
        self.check_range(values, "an encrypted computation overflowed")
        return values

    def load_vector(self, data: bytes) -> ts.CKKSVector:
        try:
            return ts.ckks_vector_from(self.context, data)
        except Exception as exc:  # protobuf/SEAL errors for bytes made under other parameters
            raise ContextMismatch(
                f"ciphertext cannot be loaded under context {self.hash[:16]}...: {exc}", context=self.hash
            ) from None

    def drop_to(self, vector: ts.CKKSVector, level: int) -> ts.CKKSVector:
        """Switch `vector` down to `level` levels left (smaller ciphertext; multiplying by 1 rescales)."""
        while self.level(vector) > level:
            vector = vector * 1.0
        return vector


@dataclass(frozen=True)
class Ciphertexts:
    """Serialized CKKS vectors made under one context: what members send to the supervisor."""

    context: str
    vectors: tuple[bytes, ...]
    model: str = ""
    bounds: tuple[tuple[float, float], ...] = ()
    """For a refresh of model weights: one (norm, |bias|) bound per vector the supervisor projects the values
    onto before re-encrypting them (`tclearn.he.model.project`); empty: values returned as they are."""

    def __post_init__(self) -> None:
        if self.bounds and len(self.bounds) != len(self.vectors):
            raise HEError(f"a message of {len(self.vectors)} vectors carries {len(self.bounds)} bounds")

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.vectors)

    def to_json(self) -> dict[str, Any]:
        bounds = {"bounds": [list(b) for b in self.bounds]} if self.bounds else {}
        return {
            "context": self.context,
            "model": self.model,
            "vectors": [base64.b64encode(v).decode("ascii") for v in self.vectors],
            **bounds,
        }

    @classmethod
    def from_json(cls, data: Any) -> Ciphertexts:
        try:
            vectors = tuple(base64.b64decode(v, validate=True) for v in data["vectors"])
            bounds = tuple((float(norm), float(bias)) for norm, bias in data.get("bounds") or ())
            return cls(str(data["context"]), vectors, str(data.get("model", "")), bounds)
        except (KeyError, TypeError, ValueError) as exc:
            raise HEError(f"malformed ciphertext message: {exc}") from None

    @classmethod
    def of(
        cls,
        he: HEContext,
        vectors: Sequence[ts.CKKSVector],
        model: str = "",
        bounds: Sequence[tuple[float, float]] = (),
    ) -> Ciphertexts:
        return cls(he.hash, tuple(bytes(v.serialize()) for v in vectors), model, tuple(bounds))

    def load(self, he: HEContext) -> list[ts.CKKSVector]:
        """The vectors, after checking they name `he`'s context."""
        if self.context != he.hash:
            raise ContextMismatch(
                f"ciphertexts were made under context {self.context[:16]}..., not {he.hash[:16]}...",
                context=self.context,
                expected=he.hash,
            )
        return [he.load_vector(v) for v in self.vectors]
