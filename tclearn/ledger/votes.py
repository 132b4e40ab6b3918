"""Votes signed off chain (EIP-712) and carried to the contract in one `decide` transaction.

A validator signs the typed `Vote` (candidate id, its model hash, approve, the two fixed-point scores and the
evidence hash) under the coalition's domain: name "tclearn Coalition", version "2", the chain id and the
contract address. A signature for another chain, another contract or another candidate recovers another
address, which the contract refuses as `NotValidator`. Pure functions; the records travel as JSON (the vault's
ballot box, `ballots/<model hash>/<signer>.json`: `tclearn.coalition.ballots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, IntegrityError
from tclearn.ledger.values import bytes32
from tclearn.protocol import INT64_MAX, INT64_MIN, to_fixed

DOMAIN_NAME = "tclearn Coalition"
DOMAIN_VERSION = "2"
VOTE_TYPES = {
    "Vote": [
        {"name": "candidate", "type": "uint256"},
        {"name": "modelHash", "type": "bytes32"},
        {"name": "approve", "type": "bool"},
        {"name": "scoreGlobal", "type": "int64"},
        {"name": "scoreLocal", "type": "int64"},
        {"name": "evidenceHash", "type": "bytes32"},
    ]
}
HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
"""Signatures with a larger s are refused (the malleable twin of a valid one), as the contract does."""


@dataclass(frozen=True)
class Domain:
    """Where a signed vote counts: one contract on one chain."""

    chain_id: int
    contract: str

    def to_eip712(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.contract),
        }


@dataclass(frozen=True)
class SignedVote:
    """One validator's vote on one candidate, with its signature (65 bytes: r, s, v)."""

    candidate: int
    model_hash: bytes
    approve: bool
    score_global: int  # fixed point x1e6, as the contract stores it
    score_local: int
    evidence_hash: bytes
    signer: str
    signature: bytes

    def message(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "modelHash": self.model_hash,
            "approve": self.approve,
            "scoreGlobal": self.score_global,
            "scoreLocal": self.score_local,
            "evidenceHash": self.evidence_hash,
        }

    @property
    def vrs(self) -> tuple[int, bytes, bytes]:
        return self.signature[64], self.signature[:32], self.signature[32:64]

    def as_call(self) -> tuple[bool, int, int, bytes, int, bytes, bytes]:
        """The contract's `SignedVote` tuple."""
        v, r, s = self.vrs
        return (self.approve, self.score_global, self.score_local, self.evidence_hash, v, r, s)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "model_hash": self.model_hash.hex(),
            "approve": self.approve,
            "score_global": self.score_global,
            "score_local": self.score_local,
            "evidence_hash": self.evidence_hash.hex(),
            "signer": self.signer,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedVote:
        """Parses a published vote; `IntegrityError` naming what is wrong (it is checked again on chain)."""
        try:
            vote = cls(
                candidate=int(data["candidate"]),
                model_hash=bytes32(bytes.fromhex(data["model_hash"]), "model hash"),
                approve=_bool(data["approve"]),
                score_global=_int64(data["score_global"]),
                score_local=_int64(data["score_local"]),
                evidence_hash=bytes32(bytes.fromhex(data["evidence_hash"]), "evidence hash"),
                signer=to_checksum_address(data["signer"]),
                signature=bytes.fromhex(data["signature"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(f"a signed vote that is not one: {type(exc).__name__}: {exc}") from None
        except ConfigError as exc:  # from bytes32
            raise IntegrityError(f"a signed vote that is not one: {exc}") from None
        if len(vote.signature) != 65:
            raise IntegrityError(f"a vote signature is 65 bytes, got {len(vote.signature)}")
        return vote


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"approve must be true or false, got {value!r}")
    return value


def _int64(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"a score must be an int64 (fixed point x1e6), got {value!r}")
    return value


def _signable(domain: Domain, message: dict[str, Any]) -> Any:
    return encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                **VOTE_TYPES,
            },
            "primaryType": "Vote",
            "domain": domain.to_eip712(),
            "message": message,
        }
    )


def sign_vote(
    validator: LocalAccount,
    domain: Domain,
    candidate: int,
    model_hash: bytes,
    approve: bool,
    score_global: float,
    score_local: float,
    evidence_hash: bytes,
) -> SignedVote:
    """`validator`'s signed vote on `candidate` (scores in [0, 1] floats, stored fixed point)."""
    unsigned = SignedVote(
        candidate,
        bytes32(model_hash, "model hash"),
        approve,
        to_fixed(score_global),
        to_fixed(score_local),
        bytes32(evidence_hash, "evidence hash"),
        validator.address,
        b"",
    )
    signed = validator.sign_message(_signable(domain, unsigned.message()))
    signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    return SignedVote(**{**unsigned.__dict__, "signature": signature})


def recover_signer(vote: SignedVote, domain: Domain) -> str | None:
    """The account whose key made `vote.signature` for `domain`, as the contract recovers it; None for a
    signature that recovers nobody (or a malleable one)."""
    v, r, s = vote.vrs
    if int.from_bytes(s, "big") > HALF_ORDER or v not in (27, 28):
        return None
    try:
        return str(Account.recover_message(_signable(domain, vote.message()), vrs=(v, r, s)))
    except Exception:  # an invalid point: the contract's ecrecover returns address(0)
        return None


def in_signer_order(votes: Sequence[SignedVote], domain: Domain) -> list[SignedVote]:
    """`votes` in the order `decide` requires: ascending address of the account each signature recovers (a vote
    that recovers nobody keeps its claimed signer's place, and is refused as `BadSignature`)."""
    return sorted(votes, key=lambda v: int(recover_signer(v, domain) or v.signer, 16))
