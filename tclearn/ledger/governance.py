"""The coalition's self-governance as records: what a proposal may do, the parameters, a proposal's state.

Coalition.sol (v2) has no admin: founders are set at deployment, and every later change is a proposal that an
active member makes and that is executed once two thirds of the active members approve before its deadline.
The action travels ABI-encoded (`Action.encode`); the contract stores its keccak hash and emits it whole in
`Proposed`, so proposals and ballots are rebuilt from logs. Pure: encoding, decoding, the quorum rule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, IntegrityError
from tclearn.ledger.values import EPSILON_UNIT, ZERO_ADDRESS, bytes32, checked_address
from tclearn.protocol import approvals_needed
from tclearn.types import Role

ALL_ROLES = Role.MEMBER | Role.VALIDATOR | Role.AUDITOR | Role.SUPERVISOR
PARAMETERS_ABI = "(bytes32,bytes32,uint64,uint64,uint64,uint16,uint64)"
DEFAULT_PROPOSAL_TIMEOUT = 7 * 86400
DEFAULT_MIN_VALIDATORS = 2
"""A round needs one validator besides its proposer: a coalition never drops below two."""


class ActionKind(enum.IntEnum):
    """The contract's action kinds."""

    ADMIT = 1
    SET_ROLES = 2
    REMOVE = 3
    SET_PARAMETERS = 4
    ROTATE_SUPERVISOR = 5


class ProposalState(enum.IntEnum):
    """As Coalition.sol stores it; EXPIRED is read: pending past its deadline."""

    NONE = 0
    PENDING = 1
    EXECUTED = 2
    REJECTED = 3
    EXPIRED = 4


def _roles(value: Role | int) -> Role:
    if not 0 < int(value) <= int(ALL_ROLES):
        raise ConfigError(f"roles must be a non-empty combination of {', '.join(r.name or '' for r in ALL_ROLES)}")
    return Role(int(value))


@dataclass(frozen=True)
class Parameters:
    """What the coalition sets by proposal besides its members; the contract enforces the timeouts, the
    validator floor and each member's privacy cap (`epsilon_cap`, epsilon in millionths: `values.epsilon_units`;
    0: none), validators apply the policy record of sha256 `policy_hash`."""

    policy_hash: bytes
    global_test_set_hash: bytes = b"\x00" * 32
    general_timeout: int = 3600
    voting_timeout: int = 86400
    proposal_timeout: int = DEFAULT_PROPOSAL_TIMEOUT
    min_validators: int = DEFAULT_MIN_VALIDATORS
    epsilon_cap: int = 0

    def __post_init__(self) -> None:
        bytes32(self.policy_hash, "policy hash")
        bytes32(self.global_test_set_hash, "global test set hash")
        for name in ("general_timeout", "voting_timeout", "proposal_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 < value < 2**64:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(self.min_validators, int) or not 0 <= self.min_validators < 2**16:
            raise ConfigError(f"min_validators must be 0..65535, got {self.min_validators!r}")
        if not isinstance(self.epsilon_cap, int) or not 0 <= self.epsilon_cap < 2**64:
            raise ConfigError(
                f"epsilon_cap must be epsilon in millionths, 0..2**64-1 (0: no cap), got {self.epsilon_cap!r}"
            )

    def as_tuple(self) -> tuple[bytes, bytes, int, int, int, int, int]:
        return (
            self.policy_hash,
            self.global_test_set_hash,
            self.general_timeout,
            self.voting_timeout,
            self.proposal_timeout,
            self.min_validators,
            self.epsilon_cap,
        )

    def replace(self, **changes: Any) -> Parameters:
        return Parameters(**{**self.__dict__, **changes})

    def to_json(self) -> dict[str, Any]:
        return {
            "policy_hash": self.policy_hash.hex(),
            "global_test_set_hash": self.global_test_set_hash.hex(),
            "general_timeout": self.general_timeout,
            "voting_timeout": self.voting_timeout,
            "proposal_timeout": self.proposal_timeout,
            "min_validators": self.min_validators,
            "epsilon_cap": self.epsilon_cap,
        }


@dataclass(frozen=True)
class Admit:
    account: str
    roles: Role
    encryption_key: bytes = b"\x00" * 32
    name: str = ""
    kind = ActionKind.ADMIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "account", checked_address(self.account))
        object.__setattr__(self, "roles", _roles(self.roles))
        bytes32(self.encryption_key, "encryption key")

    def encode(self) -> bytes:
        return abi_encode(
            ["address", "uint8", "bytes32", "string"], [self.account, int(self.roles), self.encryption_key, self.name]
        )

    def describe(self) -> str:
        return f"admit {self.name or self.account} ({self.account}) as {_role_names(self.roles)}"


@dataclass(frozen=True)
class SetRoles:
    account: str
    roles: Role
    kind = ActionKind.SET_ROLES

    def __post_init__(self) -> None:
        object.__setattr__(self, "account", checked_address(self.account))
        object.__setattr__(self, "roles", _roles(self.roles))

    def encode(self) -> bytes:
        return abi_encode(["address", "uint8"], [self.account, int(self.roles)])

    def describe(self) -> str:
        return f"set the roles of {self.account} to {_role_names(self.roles)}"


@dataclass(frozen=True)
class Remove:
    account: str
    kind = ActionKind.REMOVE

    def __post_init__(self) -> None:
        object.__setattr__(self, "account", checked_address(self.account))

    def encode(self) -> bytes:
        return abi_encode(["address"], [self.account])

    def describe(self) -> str:
        return f"remove {self.account}"


@dataclass(frozen=True)
class SetParameters:
    parameters: Parameters
    kind = ActionKind.SET_PARAMETERS

    def encode(self) -> bytes:
        return abi_encode([PARAMETERS_ABI], [self.parameters.as_tuple()])

    def describe(self) -> str:
        p = self.parameters
        return (
            f"set the policy to {p.policy_hash.hex()[:12]}…, G to {p.global_test_set_hash.hex()[:12]}…, "
            f"timeouts general {p.general_timeout} s, voting {p.voting_timeout} s, proposal {p.proposal_timeout} s, "
            f"at least {p.min_validators} validators, {describe_cap(p.epsilon_cap)}"
        )


@dataclass(frozen=True)
class RotateSupervisor:
    from_: str  # the current supervisor, or the zero address if there is none
    to: str
    kind = ActionKind.ROTATE_SUPERVISOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_", checked_address(self.from_))
        object.__setattr__(self, "to", checked_address(self.to))

    def encode(self) -> bytes:
        return abi_encode(["address", "address"], [self.from_, self.to])

    def describe(self) -> str:
        if self.from_ == ZERO_ADDRESS:
            return f"make {self.to} the supervisor"
        return f"hand the supervisor role from {self.from_} to {self.to}"


Action = Admit | SetRoles | Remove | SetParameters | RotateSupervisor


def epsilon_text(units: int) -> str:
    """Epsilon in millionths (as the chain counts it) as an exact decimal: 1500000 -> "1.5"."""
    return f"{units // EPSILON_UNIT}.{units % EPSILON_UNIT:06d}".rstrip("0").rstrip(".")


def describe_cap(units: int) -> str:
    """A privacy cap in words: `units` are epsilon in millionths, 0 none."""
    return f"privacy cap epsilon {epsilon_text(units)} per member" if units else "no privacy cap"


def _role_names(roles: Role) -> str:
    return "+".join(r.name.lower() for r in Role if r and r in roles and r.name)


def decode_action(kind: int, data: bytes) -> Action:
    """The action a `Proposed` event carries; `IntegrityError` for bytes that are not one."""
    try:
        k = ActionKind(kind)
        if k is ActionKind.ADMIT:
            account, roles, key, name = abi_decode(["address", "uint8", "bytes32", "string"], data)
            return Admit(to_checksum_address(account), Role(roles), bytes(key), name)
        if k is ActionKind.SET_ROLES:
            account, roles = abi_decode(["address", "uint8"], data)
            return SetRoles(to_checksum_address(account), Role(roles))
        if k is ActionKind.REMOVE:
            (account,) = abi_decode(["address"], data)
            return Remove(to_checksum_address(account))
        if k is ActionKind.SET_PARAMETERS:
            ((policy, test_set, general, voting, proposal, floor, cap),) = abi_decode([PARAMETERS_ABI], data)
            return SetParameters(Parameters(bytes(policy), bytes(test_set), general, voting, proposal, floor, cap))
        source, target = abi_decode(["address", "address"], data)
        return RotateSupervisor(to_checksum_address(source), to_checksum_address(target))
    except (ValueError, TypeError, ConfigError, DecodingError) as exc:
        raise IntegrityError(f"proposal action of kind {kind} does not decode: {exc}") from None


@dataclass(frozen=True)
class BallotCast:
    member: str
    approve: bool
    block_number: int


@dataclass(frozen=True)
class Proposal:
    """A proposal as the chain holds it, with its action and every ballot read from the logs."""

    id: int
    action: Action
    action_hash: bytes
    state: ProposalState
    proposer: str
    eligible: int
    approvals: int
    rejections: int
    deadline: int
    ballots: tuple[BallotCast, ...] = ()

    @property
    def needed(self) -> int:
        return approvals_needed(self.eligible)

    @property
    def executable(self) -> bool:
        return self.state is ProposalState.PENDING and self.approvals >= self.needed


def effective_state(stored: int, deadline: int, now: int) -> ProposalState:
    """The stored state, EXPIRED for one still pending past its deadline."""
    state = ProposalState(stored)
    if state is ProposalState.PENDING and now > deadline:
        return ProposalState.EXPIRED
    return state
