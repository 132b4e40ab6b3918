"""`LedgerClient`: the Coalition contract seen from Python, with typed results and gas figures.

Implements `tclearn.ledger.ledger.Ledger` (whose records it re-exports). Every write is signed by the
actor passed in (its own key, raw transaction) and sent by `tclearn.ledger.sending`: simulated first, so a
call the contract would refuse raises `ContractRevert` naming the custom error and nothing is sent.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, ContractRevert, LedgerError, NoContract
from tclearn.ledger.artifact import load_artifact
from tclearn.ledger.chain import Chain
from tclearn.ledger.events import LedgerEvent, decode_log, fetch_events
from tclearn.ledger.ledger import Submission, TxResult, VoteOutcome, raise_if_staled, vote_outcome
from tclearn.ledger.ledger import bytes32 as _bytes32
from tclearn.ledger.ledger import checked_address as _address
from tclearn.ledger.nonces import default_lock_dir
from tclearn.ledger.reverts import decode_revert, revert_data
from tclearn.ledger.sending import Sender, send
from tclearn.protocol import to_fixed
from tclearn.types import Member, ModelRecord, ModelState, Role, Variant

__all__ = ["LedgerClient", "Submission", "TxResult", "VoteOutcome"]


class LedgerClient:
    """The Coalition contract at `address` on `chain`.

    `nonce_locks` is the folder of the per-account nonce lock files (`tclearn.ledger.nonces`): every process
    that signs as one account on one host must use the same folder (the default is the system temp folder's).
    """

    def __init__(
        self, chain: Chain, address: str, *, receipt_timeout: float = 120.0, nonce_locks: Path | None = None
    ) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.artifact = load_artifact()
        try:
            self.address = to_checksum_address(address)
        except ValueError:
            raise ConfigError(f"{address!r} is not an Ethereum address") from None
        code = bytes(self.w3.eth.get_code(self.address))
        if not code:
            raise NoContract(f"no contract at {self.address} on chain {chain.chain_id}")
        if "0x" + code.hex() != self.artifact.deployed_bytecode:
            raise NoContract(
                f"the contract at {self.address} is not the Coalition contract of this tclearn version "
                f"(compiled by solc {self.artifact.compiler})"
            )
        self.contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self.receipt_timeout = receipt_timeout
        self.nonce_locks = nonce_locks or default_lock_dir()
        self._senders: dict[str, Sender] = {}
        self._senders_lock = threading.Lock()

    # ---- deployment ------------------------------------------------------------------------------

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        deployer: LocalAccount,
        *,
        variant: Variant,
        genesis_hash: bytes,
        genesis_uri: str,
        policy_hash: bytes,
        global_test_set_hash: bytes = b"\x00" * 32,
        general_timeout: int = 3600,
        voting_timeout: int = 86400,
        nonce_locks: Path | None = None,
    ) -> tuple[LedgerClient, TxResult]:
        """Deploys a new coalition whose genesis model is `genesis_hash` and whose acceptance policy is the record
        of sha256 `policy_hash` (`tclearn.coalition.policy.AcceptancePolicy`); returns it and the receipt."""
        artifact = load_artifact()
        factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        args = (
            int(variant),
            genesis_hash,
            genesis_uri,
            global_test_set_hash,
            policy_hash,
            general_timeout,
            voting_timeout,
        )
        fn = factory.constructor(*args)
        sender = Sender.on(chain, deployer, nonce_locks or default_lock_dir())
        receipt = send(chain, sender, fn, "deploy", artifact, timeout=120.0)
        client = cls(chain, receipt["contractAddress"], nonce_locks=nonce_locks)
        return client, client._result(receipt)

    # ---- transactions ------------------------------------------------------------------------------

    def _sender(self, account: LocalAccount) -> Sender:
        with self._senders_lock:
            sender = self._senders.get(account.address)
            if sender is None:
                sender = self._senders[account.address] = Sender.on(self.chain, account, self.nonce_locks)
            return sender

    def _result(self, receipt: Any) -> TxResult:
        events = (decode_log(log, self.artifact) for log in receipt["logs"] if log["address"] == self.address)
        return TxResult(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=tuple(e for e in events if e is not None),
        )

    def _transact(self, account: LocalAccount, action: str, fn_name: str, *args: Any) -> TxResult:
        fn = getattr(self.contract.functions, fn_name)(*args)
        receipt = send(
            self.chain,
            self._sender(account),
            fn,
            action,
            self.artifact,
            timeout=self.receipt_timeout,
        )
        return self._result(receipt)

    def register_member(
        self,
        admin: LocalAccount,
        account: str,
        roles: Role,
        encryption_key: bytes = b"\x00" * 32,
        name: str = "",
    ) -> TxResult:
        key = _bytes32(encryption_key, "encryption key")
        return self._transact(admin, f"register {account}", "registerMember", _address(account), int(roles), key, name)

    def set_roles(self, admin: LocalAccount, account: str, roles: Role) -> TxResult:
        return self._transact(admin, f"set roles of {account}", "setRoles", _address(account), int(roles))

    def deactivate_member(self, admin: LocalAccount, account: str) -> TxResult:
        return self._transact(admin, f"deactivate {account}", "deactivateMember", _address(account))

    def transfer_admin(self, admin: LocalAccount, new_admin: str) -> TxResult:
        return self._transact(admin, "transfer admin", "transferAdmin", _address(new_admin))

    def set_global_test_set(self, admin: LocalAccount, test_set_hash: bytes) -> TxResult:
        return self._transact(admin, "set global test set", "setGlobalTestSet", _bytes32(test_set_hash, "hash"))

    def set_policy(self, admin: LocalAccount, policy_hash: bytes) -> TxResult:
        return self._transact(admin, "set policy", "setPolicy", _bytes32(policy_hash, "policy hash"))

    def set_encryption_key(self, member: LocalAccount, encryption_key: bytes) -> TxResult:
        key = _bytes32(encryption_key, "encryption key")
        return self._transact(member, "set encryption key", "setEncryptionKey", key)

    def submit(
        self, member: LocalAccount, parent_id: int, model_hash: bytes, uri: str, metadata_hash: bytes
    ) -> Submission:
        tx = self._transact(
            member,
            "submit",
            "submit",
            parent_id,
            _bytes32(model_hash, "model hash"),
            uri,
            _bytes32(metadata_hash, "metadata hash"),
        )
        ev = tx.event("Submitted")
        assert ev is not None, "a successful submit always emits Submitted"
        a = ev.args
        return Submission(a["id"], a["general"], a["eligible"], a["generalDeadline"], tx)

    def open_candidate(self, general: LocalAccount, model_id: int, integrity_ok: bool, report_hash: bytes) -> TxResult:
        report = _bytes32(report_hash, "report hash")
        tx = self._transact(general, f"open candidate {model_id}", "openCandidate", model_id, integrity_ok, report)
        raise_if_staled(tx, model_id)
        return tx

    def reassign_general(self, caller: LocalAccount, model_id: int) -> TxResult:
        tx = self._transact(caller, f"reassign general of {model_id}", "reassignGeneral", model_id)
        raise_if_staled(tx, model_id)
        return tx

    def vote(
        self,
        validator: LocalAccount,
        model_id: int,
        approve: bool,
        score_global: float,
        score_local: float,
        evidence_hash: bytes,
    ) -> VoteOutcome:
        tx = self._transact(
            validator,
            f"vote on {model_id}",
            "vote",
            model_id,
            approve,
            to_fixed(score_global),
            to_fixed(score_local),
            _bytes32(evidence_hash, "evidence hash"),
        )
        return vote_outcome(tx, model_id)

    def expire(self, caller: LocalAccount, model_id: int) -> TxResult:
        tx = self._transact(caller, f"expire {model_id}", "expire", model_id)
        raise_if_staled(tx, model_id)
        return tx

    def mark_stale(self, caller: LocalAccount, model_id: int) -> TxResult:
        return self._transact(caller, f"mark {model_id} stale", "markStale", model_id)

    # ---- views ----------------------------------------------------------------------------------------

    def _view(self, fn_name: str, *args: Any) -> Any:
        try:
            return getattr(self.contract.functions, fn_name)(*args).call()
        except Exception as exc:  # web3 and eth-tester report reverts by several exception types
            data = revert_data(exc)
            if data is None:
                raise LedgerError(f"reading {fn_name} failed: {exc}") from None
            raise decode_revert(self.artifact, data, fn_name) from None

    def head(self) -> int:
        return int(self._view("head"))

    def variant(self) -> Variant:
        return Variant(self._view("variant"))

    def admin(self) -> str:
        return str(self._view("admin"))

    def global_test_set_hash(self) -> bytes:
        return bytes(self._view("globalTestSetHash"))

    def policy_hash(self) -> bytes:
        return bytes(self._view("policyHash"))

    def timeouts(self) -> tuple[int, int]:
        return int(self._view("generalTimeout")), int(self._view("votingTimeout"))

    def model_count(self) -> int:
        return int(self._view("modelCount"))

    def validator_count(self) -> int:
        return int(self._view("validatorCount"))

    def has_voted(self, model_id: int, validator: str) -> bool:
        return bool(self._view("hasVoted", model_id, _address(validator)))

    def model_id_of(self, model_hash: bytes) -> int | None:
        try:
            return int(self._view("modelIdOf", _bytes32(model_hash, "model hash")))
        except ContractRevert:
            return None

    def get_model(self, model_id: int, *, with_uri: bool = True) -> ModelRecord:
        m = self._view("getModel", model_id)
        uri = self.model_uri(model_id) if with_uri else None
        return ModelRecord(
            id=model_id,
            model_hash=bytes(m[0]),
            metadata_hash=bytes(m[1]),
            proposer=m[2],
            parent_id=m[3],
            state=ModelState(m[4]),
            eligible=m[5],
            rejections=m[6],
            general=m[7],
            general_deadline=m[8],
            voting_deadline=m[9],
            approvals=m[10],
            uri=uri,
        )

    def model_uri(self, model_id: int) -> str | None:
        """The URI the proposer gave in `Submitted` (kept in the log, not in contract storage)."""
        topic = "0x" + model_id.to_bytes(32, "big").hex()
        submitted = next(t for t, e in self.artifact.events.items() if e["name"] == "Submitted")
        events = fetch_events(
            self.w3, self.address, 0, self.chain.latest_block(), topics=["0x" + submitted.hex(), topic]
        )
        return str(events[0].args["uri"]) if events else None

    def get_member(self, account: str) -> Member | None:
        m = self._view("getMember", _address(account))
        if m[4] == 0:  # joinedAt: never registered
            return None
        return Member(
            address=_address(account),
            roles=Role(m[0]),
            active=bool(m[1]),
            index=m[2],
            validator_since=m[3],
            joined_at=m[4],
            encryption_key=bytes(m[5]),
            name=m[6],
        )

    def members(self) -> list[Member]:
        """Every account ever registered, active or not, in registration order."""
        accounts = [self._view("memberAt", i) for i in range(int(self._view("memberCount")))]
        return [m for m in (self.get_member(a) for a in accounts) if m is not None]

    def events(self, from_block: int = 0, to_block: int | None = None) -> list[LedgerEvent]:
        end = self.chain.latest_block() if to_block is None else to_block
        return fetch_events(self.w3, self.address, from_block, end)
