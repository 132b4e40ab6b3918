"""Governance as its users see it: an action built from what a person typed, a parameter change made from the
coalition's current parameters, and a proposal as JSON with its ballots — shared by `tclearn gov`, the member
API and the auditor dashboard. Pure but for `store_policy`, which writes the policy record to the vault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tclearn.coalition.policy import AcceptancePolicy, chain_cap
from tclearn.errors import ConfigError
from tclearn.ledger.governance import (
    Action,
    Admit,
    Parameters,
    Proposal,
    Remove,
    RotateSupervisor,
    SetParameters,
    SetRoles,
)
from tclearn.ledger.ledger import ZERO_ADDRESS
from tclearn.ledger.values import epsilon_of, epsilon_units
from tclearn.types import hex32
from tclearn.vault.store import BlobStore

PARAMETER_NAMES = (
    "global_test_set_hash",
    "general_timeout",
    "voting_timeout",
    "proposal_timeout",
    "min_validators",
    "epsilon_cap",
)


def key_bytes(text: str, option: str) -> bytes:
    """A 32-byte hex value given to `option` (with or without 0x), as the config files read one."""
    try:
        return hex32(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def store_policy(store: BlobStore, policy: AcceptancePolicy) -> bytes:
    """Stores `policy`'s record in the vault, as founding does; its sha256, which a proposal declares."""
    return bytes.fromhex(store.put(policy.encode()))


def privacy_cap(policy: AcceptancePolicy | None, given: float | None) -> int | None:
    """The privacy cap (millionths) a parameters proposal sets on chain: the epsilon `given`, else a new `policy`
    record's (0 where it has no DP rules); None: neither, the cap stays. A `given` cap that contradicts the new
    record's is a `ConfigError`: the chain's cap is what the policy says."""
    ours = None if policy is None else chain_cap(policy)
    if given is None:
        return ours
    cap = epsilon_units(given)
    if ours is not None and cap != ours:
        raise ConfigError(
            f"--epsilon-cap {given:g} contradicts the new policy's privacy cap {epsilon_of(ours):g}: give one of them"
        )
    return cap


def parameters_change(current: Parameters, policy_hash: bytes | None = None, **changes: Any) -> SetParameters:
    """The coalition's `current` parameters with the given ones changed (None: unchanged); a `ConfigError` when
    nothing would change, or for a name that is not a parameter."""
    unknown = sorted(set(changes) - set(PARAMETER_NAMES))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; expected some of {', '.join(PARAMETER_NAMES)}")
    given = {k: v for k, v in {"policy_hash": policy_hash, **changes}.items() if v is not None}
    wanted = current.replace(**given)
    if wanted == current:
        raise ConfigError(
            "this changes nothing: give a new policy, test set hash, timeout, validator floor or privacy cap "
            "(`tclearn gov list` shows what is proposed already)"
        )
    return SetParameters(wanted)


def action_json(action: Action) -> dict[str, Any]:
    """The action's fields as JSON: addresses as they are, roles as names, bytes as hex."""
    if isinstance(action, Admit):
        return {
            "account": action.account,
            "roles": action.roles.names(),
            "encryption_key": action.encryption_key.hex(),
            "name": action.name,
        }
    if isinstance(action, SetRoles):
        return {"account": action.account, "roles": action.roles.names()}
    if isinstance(action, Remove):
        return {"account": action.account}
    if isinstance(action, SetParameters):
        return action.parameters.to_json()
    return {"from": action.from_, "to": action.to}


KIND_NAMES = {Admit: "admit", SetRoles: "roles", Remove: "remove", SetParameters: "parameters"}


def kind_name(action: Action) -> str:
    """admit, roles, remove, parameters or supervisor: the word `tclearn gov propose` and the API use."""
    return KIND_NAMES.get(type(action), "supervisor")


def proposal_json(p: Proposal, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A proposal as the CLI, the member API and the auditor show it; `names` maps addresses to member names."""
    names = names or {}
    return {
        "id": p.id,
        "kind": kind_name(p.action),
        "action": action_json(p.action),
        "description": p.action.describe(),
        "proposer": p.proposer,
        "proposer_name": names.get(p.proposer, ""),
        "state": p.state.name.lower(),
        "eligible": p.eligible,
        "approvals": p.approvals,
        "needed": p.needed,
        "rejections": p.rejections,
        "deadline": p.deadline,
        "executable": p.executable,
        "ballots": [
            {"member": b.member, "member_name": names.get(b.member, ""), "approve": b.approve, "block": b.block_number}
            for b in p.ballots
        ],
    }


def supervisor_rotation(source: str | None, target: str) -> RotateSupervisor:
    """Hand the supervisor role from `source` (None: there is none yet) to `target`."""
    return RotateSupervisor(source or ZERO_ADDRESS, target)
