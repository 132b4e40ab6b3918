"""The membership half of the in-memory ledger: the registry, the active validators and the parameters.

Mirrors Coalition.sol's membership internals (`_admit`, `_applyRoles`, `_setParameters`, `_spend`): the active
validators are kept in the contract's swap-and-pop order, each member's `validatorSince` is the model count when it
gained the validator role and its `memberSince` the proposal count when it was admitted, so eligibility, general
draws and ballots follow the contract; its privacy spending only grows. No admin: the governance
(`tclearn.ledger.memory.governance`) calls these.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from tclearn.ledger.governance import ALL_ROLES, Parameters
from tclearn.ledger.ledger import ZERO_ADDRESS, TxResult, bytes32, checked_address
from tclearn.ledger.memory.blocks import MemoryChain, MemoryContract, transaction
from tclearn.types import Member, Role

ZERO32 = b"\x00" * 32
MAX_MEMBERS = 2**16 - 1  # the contract's member indices are uint16, with the top value meaning "nobody"


@dataclass
class _Member:
    index: int
    joined_at: int = 0
    roles: int = 0
    active: bool = False
    validator_since: int = 0
    member_since: int = 0
    epsilon_spent: int = 0  # never decreases: not on removal, re-admission or a cap change
    encryption_key: bytes = ZERO32
    name: str = ""


class MemberRegistry(MemoryContract):
    """The coalition's members and parameters; the governance and `InMemoryLedger` build on it."""

    def __init__(self, chain: MemoryChain, deployer: LocalAccount, seed: bytes) -> None:
        super().__init__(chain, deployer, seed)
        self._members: dict[str, _Member] = {}  # in registration order, as the contract's memberList
        self._validators: list[str] = []  # active validators, in the contract's (swap and pop) order
        self._active_members = 0  # the contract's activeMemberCount
        self._parameters: Parameters | None = None

    def model_count(self) -> int:
        raise NotImplementedError  # the models live in the subclass

    def proposal_count(self) -> int:
        raise NotImplementedError  # the proposals live in the subclass

    # ---- internals, as the contract's ----------------------------------------------------------------------

    def _check_roles(self, roles: int, action: str) -> None:
        if not 0 < roles <= int(ALL_ROLES):
            raise self._refuse(action, "InvalidRoles", roles=roles)

    def _check_parameters(self, p: Parameters, action: str) -> None:
        if p.policy_hash == ZERO32:
            raise self._refuse(action, "ZeroHash")
        if 0 in (p.general_timeout, p.voting_timeout, p.proposal_timeout):
            raise self._refuse(action, "InvalidTimeout")

    def _set_parameters(self, p: Parameters, action: str) -> None:
        self._check_parameters(p, action)
        self._parameters = p
        self._emit("GlobalTestSetChanged", hash=p.global_test_set_hash)
        self._emit("PolicyChanged", hash=p.policy_hash)
        self._emit(
            "ParametersChanged",
            generalTimeout=p.general_timeout,
            votingTimeout=p.voting_timeout,
            proposalTimeout=p.proposal_timeout,
            minValidators=p.min_validators,
            epsilonCap=p.epsilon_cap,
        )

    def _check_admit(self, account: str, roles: int, action: str) -> None:
        """`_admit`'s checks, before it changes anything."""
        if account == ZERO_ADDRESS:
            raise self._refuse(action, "ZeroAddress")
        self._check_roles(roles, action)
        m = self._members.get(account)
        if m is not None and m.active:
            raise self._refuse(action, "AlreadyMember", account=account)
        if m is None and len(self._members) >= MAX_MEMBERS:
            raise self._refuse(action, "TooManyMembers")

    def _admit(self, account: str, roles: int, key: bytes, name: str, action: str) -> None:
        """Registers `account`, or re-activates a removed one with new roles, key and name."""
        self._check_admit(account, roles, action)
        m = self._members.get(account)
        if m is None:
            m = self._members[account] = _Member(index=len(self._members))
        m.joined_at, m.member_since, m.encryption_key, m.name = self.chain.timestamp(), self.proposal_count(), key, name
        m.active, m.roles = True, 0
        self._active_members += 1
        self._apply_roles(account, m, roles)
        self._emit("MemberRegistered", account=account, roles=roles, encryptionKey=key, name=name)

    def _apply_roles(self, account: str, m: _Member, roles: int) -> None:
        was, becomes = bool(m.roles & Role.VALIDATOR), bool(roles & Role.VALIDATOR)
        if becomes and not was:
            self._validators.append(account)
            m.validator_since = self.model_count()
        elif was and not becomes:
            pos = self._validators.index(account)
            self._validators[pos] = self._validators[-1]
            self._validators.pop()
        m.roles = roles

    def _check_spend(self, proposer: str, charge: int, action: str) -> None:
        """`_spend`'s check, before anything changes: the plain sum never past the cap (with no cap, never past
        what the contract's uint64 counter holds)."""
        spent, cap = self._members[proposer].epsilon_spent, self.parameters().epsilon_cap
        if spent + charge > (cap or 2**64 - 1):
            raise self._refuse(action, "OverBudget", member=proposer, spent=spent, charge=charge, cap=cap)

    def _spend(self, proposer: str, model_id: int, charge: int) -> None:
        """Charges `charge` (checked by `_check_spend`) to `proposer`'s privacy budget for candidate `model_id`."""
        m = self._members[proposer]
        m.epsilon_spent += charge
        self._emit("PrivacySpent", id=model_id, member=proposer, charge=charge, spent=m.epsilon_spent)

    def _deactivate(self, account: str, m: _Member) -> None:
        self._apply_roles(account, m, 0)
        m.active = False
        self._active_members -= 1
        self._emit("RolesChanged", account=account, roles=0, active=False)

    def _check_validators(self, remaining: int, needed: int, action: str) -> None:
        if remaining < needed:
            raise self._refuse(action, "TooFewValidators", remaining=remaining, needed=needed)

    def _active_member(self, address: str, action: str) -> _Member:
        m = self._members.get(address)
        if m is None or not m.active:
            raise self._refuse(action, "NotMember", account=address)
        return m

    # ---- a member's own key ------------------------------------------------------------------------------

    @transaction
    def set_encryption_key(self, member: LocalAccount, encryption_key: bytes) -> TxResult:
        key = bytes32(encryption_key, "encryption key")
        self._active_member(member.address, "set encryption key").encryption_key = key
        self._emit("EncryptionKeyChanged", account=member.address, encryptionKey=key)
        return self._mine()

    # ---- views ----------------------------------------------------------------------------------------

    def parameters(self) -> Parameters:
        assert self._parameters is not None, "set at construction"
        return self._parameters

    def global_test_set_hash(self) -> bytes:
        return self.parameters().global_test_set_hash

    def policy_hash(self) -> bytes:
        return self.parameters().policy_hash

    def timeouts(self) -> tuple[int, int]:
        p = self.parameters()
        return p.general_timeout, p.voting_timeout

    def privacy_spent(self, account: str) -> int:
        m = self._members.get(checked_address(account))
        return 0 if m is None else m.epsilon_spent

    def validator_count(self) -> int:
        return len(self._validators)

    def active_member_count(self) -> int:
        return self._active_members

    def get_member(self, account: str) -> Member | None:
        address = checked_address(account)
        m = self._members.get(address)
        if m is None:
            return None
        return Member(
            address=address,
            roles=Role(m.roles),
            active=m.active,
            encryption_key=m.encryption_key,
            name=m.name,
            index=m.index,
            validator_since=m.validator_since,
            joined_at=m.joined_at,
            member_since=m.member_since,
            epsilon_spent=m.epsilon_spent,
        )

    def members(self) -> list[Member]:
        """Every account ever registered, active or not, in registration order."""
        with self._lock:
            return [m for m in map(self.get_member, list(self._members)) if m is not None]
