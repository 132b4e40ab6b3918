"""The membership half of the in-memory ledger: the admin, the registry and the active validators.

Mirrors Coalition.sol's membership functions, `_applyRoles` included: the active validators are kept in
the contract's swap-and-pop order and each member's `validatorSince` is the model count when it gained
the validator role, so eligibility and general draws follow the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from tclearn.ledger.ledger import ZERO_ADDRESS, TxResult, bytes32, checked_address
from tclearn.ledger.memory.blocks import MemoryChain, MemoryContract, transaction
from tclearn.types import Member, Role

ZERO32 = b"\x00" * 32
MAX_MEMBERS = 2**16 - 1  # the contract's member indices are uint16, with the top value meaning "nobody"
ALL_ROLES = Role.MEMBER | Role.VALIDATOR | Role.AUDITOR | Role.SUPERVISOR


@dataclass
class _Member:
    index: int
    joined_at: int
    roles: int = 0
    active: bool = False
    validator_since: int = 0
    encryption_key: bytes = ZERO32
    name: str = ""


class MemberRegistry(MemoryContract):
    """The coalition's members and admin; `InMemoryLedger` adds the models and the round."""

    def __init__(
        self, chain: MemoryChain, deployer: LocalAccount, seed: bytes, global_test_set_hash: bytes, policy_hash: bytes
    ) -> None:
        super().__init__(chain, deployer, seed)
        self._admin: str = deployer.address
        self._global_test_set_hash = bytes32(global_test_set_hash, "global test set hash")
        self._policy_hash = bytes32(policy_hash, "policy hash")
        self._members: dict[str, _Member] = {}  # in registration order, as the contract's memberList
        self._validators: list[str] = []  # active validators, in the contract's (swap and pop) order
        self._emit("AdminTransferred", previousAdmin=ZERO_ADDRESS, newAdmin=deployer.address)
        self._emit("GlobalTestSetChanged", hash=self._global_test_set_hash)
        self._emit("PolicyChanged", hash=self._policy_hash)

    def model_count(self) -> int:
        raise NotImplementedError  # the models live in the subclass

    def _only_admin(self, caller: LocalAccount, action: str) -> None:
        if caller.address != self._admin:
            raise self._refuse(action, "NotAdmin", caller=caller.address)

    def _check_roles(self, roles: Role, action: str) -> None:
        if not 0 < int(roles) <= int(ALL_ROLES):
            raise self._refuse(action, "InvalidRoles", roles=int(roles))

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

    @transaction
    def register_member(
        self, admin: LocalAccount, account: str, roles: Role, encryption_key: bytes = ZERO32, name: str = ""
    ) -> TxResult:
        key, action = bytes32(encryption_key, "encryption key"), f"register {account}"
        address = checked_address(account)
        self._only_admin(admin, action)
        if address == ZERO_ADDRESS:
            raise self._refuse(action, "ZeroAddress")
        self._check_roles(roles, action)
        m = self._members.get(address)
        if m is not None and m.active:
            raise self._refuse(action, "AlreadyMember", account=address)
        if m is None:
            if len(self._members) >= MAX_MEMBERS:
                raise self._refuse(action, "TooManyMembers")
            m = self._members[address] = _Member(index=len(self._members), joined_at=0)
        m.joined_at, m.encryption_key, m.name, m.active, m.roles = self.chain.timestamp(), key, name, True, 0
        self._apply_roles(address, m, int(roles))
        self._emit("MemberRegistered", account=address, roles=int(roles), encryptionKey=key, name=name)
        return self._mine()

    def _active_member(self, address: str, action: str) -> _Member:
        m = self._members.get(address)
        if m is None or not m.active:
            raise self._refuse(action, "NotMember", account=address)
        return m

    @transaction
    def set_roles(self, admin: LocalAccount, account: str, roles: Role) -> TxResult:
        address, action = checked_address(account), f"set roles of {account}"
        self._only_admin(admin, action)
        self._check_roles(roles, action)
        self._apply_roles(address, self._active_member(address, action), int(roles))
        self._emit("RolesChanged", account=address, roles=int(roles), active=True)
        return self._mine()

    @transaction
    def deactivate_member(self, admin: LocalAccount, account: str) -> TxResult:
        address, action = checked_address(account), f"deactivate {account}"
        self._only_admin(admin, action)
        m = self._active_member(address, action)
        self._apply_roles(address, m, 0)
        m.active = False
        self._emit("RolesChanged", account=address, roles=0, active=False)
        return self._mine()

    @transaction
    def transfer_admin(self, admin: LocalAccount, new_admin: str) -> TxResult:
        address = checked_address(new_admin)
        self._only_admin(admin, "transfer admin")
        if address == ZERO_ADDRESS:
            raise self._refuse("transfer admin", "ZeroAddress")
        self._emit("AdminTransferred", previousAdmin=self._admin, newAdmin=address)
        self._admin = address
        return self._mine()

    @transaction
    def set_global_test_set(self, admin: LocalAccount, test_set_hash: bytes) -> TxResult:
        digest = bytes32(test_set_hash, "hash")
        self._only_admin(admin, "set global test set")
        self._global_test_set_hash = digest
        self._emit("GlobalTestSetChanged", hash=digest)
        return self._mine()

    @transaction
    def set_policy(self, admin: LocalAccount, policy_hash: bytes) -> TxResult:
        digest = bytes32(policy_hash, "policy hash")
        self._only_admin(admin, "set policy")
        if digest == ZERO32:
            raise self._refuse("set policy", "ZeroHash")
        self._policy_hash = digest
        self._emit("PolicyChanged", hash=digest)
        return self._mine()

    @transaction
    def set_encryption_key(self, member: LocalAccount, encryption_key: bytes) -> TxResult:
        key = bytes32(encryption_key, "encryption key")
        self._active_member(member.address, "set encryption key").encryption_key = key
        self._emit("EncryptionKeyChanged", account=member.address, encryptionKey=key)
        return self._mine()

    # ---- views ----------------------------------------------------------------------------------------

    def admin(self) -> str:
        return self._admin

    def global_test_set_hash(self) -> bytes:
        return self._global_test_set_hash

    def policy_hash(self) -> bytes:
        return self._policy_hash

    def validator_count(self) -> int:
        return len(self._validators)

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
        )

    def members(self) -> list[Member]:
        """Every account ever registered, active or not, in registration order."""
        with self._lock:
            return [m for m in map(self.get_member, list(self._members)) if m is not None]
