"""Founding a coalition: the genesis model stored (sealed for the founders in variant B), the acceptance policy's
record stored, and the contract deployed around both hashes with the founding members, who alone can change the
coalition afterwards (by 2/3 proposals: `tclearn.ledger.governance`). The demo and
`tclearn coalition up` both found their coalitions here. In variant C a founder with `Role.SUPERVISOR` registers
its public context hash as its key, and the genesis is the encrypted container it stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from eth_account.signers.local import LocalAccount

from tclearn.coalition.backend import store_weights
from tclearn.coalition.blobs import vault_uri
from tclearn.coalition.policy import AcceptancePolicy, WatermarkPolicy, chain_cap
from tclearn.coalition.watermark import store_key
from tclearn.errors import ConfigError, NotFoundError
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.watermark import MarkKey, stamp
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient, TxResult
from tclearn.ledger.governance import DEFAULT_MIN_VALIDATORS, DEFAULT_PROPOSAL_TIMEOUT, Admit, Parameters
from tclearn.ledger.ledger import Predecessor, check_founders
from tclearn.types import Role, Variant
from tclearn.vault.store import BlobStore


@dataclass(frozen=True)
class Founder:
    address: str
    encryption_key: bytes  # X25519 public key: variant B models are sealed for it (C: the supervisor's context hash)
    name: str
    roles: Role = Role.MEMBER | Role.VALIDATOR


def genesis_weights(model: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """The untrained starting model, the same for the same config and seed."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in build_model(model).state_dict().items()}


def found(
    chain: Chain,
    deployer: LocalAccount,
    store: BlobStore,
    variant: Variant,
    genesis: dict[str, torch.Tensor] | str,
    founders: Sequence[Founder],
    *,
    policy: AcceptancePolicy,
    general_timeout: int = 3600,
    voting_timeout: int = 86400,
    proposal_timeout: int = DEFAULT_PROPOSAL_TIMEOUT,
    min_validators: int = DEFAULT_MIN_VALIDATORS,
    global_test_set_hash: bytes = b"\x00" * 32,
    predecessor: Predecessor | None = None,
    watermark: MarkKey | None = None,
) -> tuple[LedgerClient, TxResult]:
    """Stores the genesis model and the acceptance `policy`, deploys the coalition around their hashes with its
    `founders` as members; returns the coalition and its deployment transaction. `deployer` pays for the
    deployment and has no power over the coalition unless it is a founder.

    Each member's privacy budget on chain is the policy's `privacy.epsilon_cap` (none without a privacy policy).
    `genesis` is the weights to store, or the hash of a genesis already in `store` (variant C: the encrypted
    container the supervisor made, `tclearn.he.encrypted.store_model`; a migration: the old coalition's head).
    With a `watermark` key (`new_key(genesis, "coalition")`), the genesis weights are stamped with it
    (`tclearn.learning.watermark.stamp`), the key is stored (sealed for the founders in B) and
    the policy's `watermark` names its commitment and blob (max_ber and strength: the policy's, else the defaults),
    so that the policy's hash on chain commits to the key.
    """
    check_founders(founders)
    readers = {f.address: f.encryption_key for f in founders} if variant is Variant.B else None
    if watermark is not None and not isinstance(genesis, str):
        genesis = stamp(genesis, watermark)  # the mark in the random start: training only keeps it
    if isinstance(genesis, str):
        if not store.exists(genesis):
            raise NotFoundError(f"genesis model {genesis} is not in the vault")
        genesis_hash = genesis
    else:
        genesis_hash = store_weights(store, genesis, readers)
    if watermark is not None:
        policy = with_watermark(policy, store, watermark, readers, variant)
    parameters = Parameters(
        policy_hash=bytes.fromhex(store.put(policy.encode())),
        global_test_set_hash=global_test_set_hash,
        general_timeout=general_timeout,
        voting_timeout=voting_timeout,
        proposal_timeout=proposal_timeout,
        min_validators=min(min_validators, sum(Role.VALIDATOR in f.roles for f in founders)),
        epsilon_cap=chain_cap(policy),
    )
    return LedgerClient.deploy(
        chain,
        deployer,
        variant=variant,
        genesis_hash=bytes.fromhex(genesis_hash),
        genesis_uri=vault_uri(genesis_hash),
        parameters=parameters,
        founders=[Admit(f.address, f.roles, f.encryption_key, f.name) for f in founders],
        predecessor=predecessor,
    )


def with_watermark(
    policy: AcceptancePolicy,
    store: BlobStore,
    key: MarkKey,
    readers: dict[str, bytes] | None,
    variant: Variant,
) -> AcceptancePolicy:
    """`policy` committing to the watermark `key`, which is stored (sealed for `readers` when given)."""
    if variant is Variant.C:
        raise ConfigError(
            "a variant C coalition cannot carry a watermark: its weights are encrypted, no member trains the mark and "
            "no general can read it (docs/traceability.md)"
        )
    if key.purpose != "coalition":
        raise ConfigError(f"the coalition's watermark needs a coalition key, not a {key.purpose} key")
    section = WatermarkPolicy(key.sha256(), store_key(store, key, readers))
    if policy.watermark is not None:  # the policy's bounds kept, its key replaced
        section = replace(section, max_ber=policy.watermark.max_ber, strength=policy.watermark.strength)
    return replace(policy, watermark=section)
