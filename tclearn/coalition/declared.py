"""The acceptance policy a coalition declared on chain: its record read from the vault by the hash the contract
holds, and checked against what a site expects.

Every validator applies the chain's policy, never a local copy: a site's own settings can only say what it
expects, and a site whose expectation differs refuses to start rather than silently apply other rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError, IntegrityError, NotFoundError
from tclearn.ledger.ledger import Ledger
from tclearn.vault.store import BlobStore


def read_policy(store: BlobStore, policy_hash: bytes) -> AcceptancePolicy:
    """The policy record of sha256 `policy_hash` from the vault (re-hashed by the store), strictly parsed."""
    named = "0x" + policy_hash.hex()
    try:
        raw = store.get(policy_hash.hex())
    except NotFoundError:
        raise NotFoundError(
            f"the coalition's acceptance policy {named} (on chain) is not in the vault; whoever founded or last set "
            "it must store its record there"
        ) from None
    except IntegrityError as exc:
        raise IntegrityError(
            f"the coalition's acceptance policy {named} in the vault is not that record: {exc}"
        ) from None
    try:
        return AcceptancePolicy.parse(raw)
    except (IntegrityError, ConfigError) as exc:
        raise IntegrityError(
            f"the coalition's acceptance policy {named} is no policy this node can apply: {exc}"
        ) from None


def declared_policy(client: Ledger, store: BlobStore) -> tuple[AcceptancePolicy, bytes]:
    """The policy the chain declares now, and its hash."""
    policy_hash = client.policy_hash()
    return read_policy(store, policy_hash), policy_hash


def check_expected(policy: AcceptancePolicy, policy_hash: bytes, expected: Mapping[str, Any]) -> None:
    """`ConfigError` naming every setting on which the chain's `policy` is not what this site expects."""
    differing = policy.differences(expected)
    if differing:
        raise ConfigError(
            f"this site expects another acceptance policy than the coalition's (0x{policy_hash.hex()} on chain): "
            f"{'; '.join(differing)}. Every validator applies the chain's policy: set the site's [policy] to the "
            "coalition's values (`tclearn ledger policy` prints them) or leave out what it need not pin"
        )


def policy_file(path: Path) -> AcceptancePolicy:
    """The policy record a coalition is to be founded with (as `tclearn coalition policy` writes it), read strictly:
    a `ConfigError` naming the file and what is wrong in it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    try:
        return AcceptancePolicy.parse(raw)
    except (IntegrityError, ConfigError) as exc:
        raise ConfigError(f"{path} is no acceptance policy: {exc}") from None
