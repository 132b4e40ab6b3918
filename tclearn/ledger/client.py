"""`LedgerClient`: the Coalition contract seen from Python, with typed results and gas figures.

Implements `tclearn.ledger.ledger.Ledger` (whose records it re-exports). Every write is signed by the
actor passed in (its own key, raw transaction) and sent by `tclearn.ledger.sending`: simulated first, so a
call the contract would refuse raises `ContractRevert` naming the custom error and nothing is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, ContractRevert, LedgerError, NoContract
from tclearn.ledger.artifact import load_artifact
from tclearn.ledger.chain import Chain
from tclearn.ledger.events import LedgerEvent, decode_log, events_about, events_named, fetch_events
from tclearn.ledger.governance import (
    Action,
    Admit,
    BallotCast,
    Parameters,
    Proposal,
    decode_action,
    effective_state,
)
from tclearn.ledger.ledger import (
    ZERO_ADDRESS,
    ExportRecord,
    Predecessor,
    Submission,
    TxResult,
    VoteOutcome,
    check_founders,
    checked_charge,
    export_action,
    export_record,
    raise_if_staled,
    vote_outcome,
)
from tclearn.ledger.ledger import bytes32 as _bytes32
from tclearn.ledger.ledger import checked_address as _address
from tclearn.ledger.nonces import default_lock_dir
from tclearn.ledger.reverts import decode_revert, revert_data
from tclearn.ledger.sending import Sender, send
from tclearn.ledger.votes import Domain, SignedVote, in_signer_order
from tclearn.protocol import to_fixed
from tclearn.types import Member, ModelRecord, ModelState, Role, Variant

__all__ = ["ExportRecord", "LedgerClient", "Submission", "TxResult", "VoteOutcome"]


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
        parameters: Parameters,
        founders: Sequence[Admit],
        predecessor: Predecessor | None = None,
        nonce_locks: Path | None = None,
    ) -> tuple[LedgerClient, TxResult]:
        """Deploys a new coalition whose genesis model is `genesis_hash`, governed from now on by `founders`
        (the deployer is not a member unless it is one of them), with `parameters` (the acceptance policy is
        the record of sha256 `parameters.policy_hash`, `tclearn.coalition.policy.AcceptancePolicy`);
        `predecessor` links a migrated coalition to the head it continues. Returns it and the receipt."""
        check_founders(founders)
        artifact = load_artifact()
        factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        link = predecessor or Predecessor(0, ZERO_ADDRESS, 0)
        args = (
            int(variant),
            _bytes32(genesis_hash, "genesis hash"),
            genesis_uri,
            parameters.as_tuple(),
            [(f.account, int(f.roles), f.encryption_key, f.name) for f in founders],
            (link.chain_id, _address(link.coalition), link.head_id),
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

    # ---- governance --------------------------------------------------------------------------------

    def propose(self, member: LocalAccount, action: Action) -> Proposal:
        """`member` proposes `action` (its own approval counts); returns the new proposal."""
        tx = self._transact(member, action.describe(), "propose", int(action.kind), action.encode())
        ev = tx.event("Proposed")
        assert ev is not None, "a successful propose always emits Proposed"
        return self.proposal(int(ev.args["proposal"]))

    def ballot(self, member: LocalAccount, proposal_id: int, approve: bool) -> TxResult:
        what = "approve" if approve else "reject"
        return self._transact(member, f"{what} proposal {proposal_id}", "ballot", proposal_id, approve)

    def execute(self, caller: LocalAccount, proposal_id: int) -> TxResult:
        """Executes an approved proposal, with its action's bytes as the `Proposed` event carries them (the
        contract checks their hash: the action decoded and encoded again may differ, e.g. trailing bytes)."""
        self._view("getProposal", proposal_id)  # an unknown id is refused by name
        proposed = next(e for e in self._proposal_logs(proposal_id) if e.name == "Proposed")
        action = bytes(proposed.args["action"])
        return self._transact(caller, f"execute proposal {proposal_id}", "execute", proposal_id, action)

    def set_encryption_key(self, member: LocalAccount, encryption_key: bytes) -> TxResult:
        key = _bytes32(encryption_key, "encryption key")
        return self._transact(member, "set encryption key", "setEncryptionKey", key)

    def submit(
        self,
        member: LocalAccount,
        parent_id: int,
        model_hash: bytes,
        uri: str,
        metadata_hash: bytes,
        epsilon_charge: int = 0,
    ) -> Submission:
        """Proposes a candidate on `parent_id` (the head); `epsilon_charge` (epsilon in millionths,
        `values.epsilon_units`) is charged to `member`'s privacy budget whatever becomes of the candidate."""
        tx = self._transact(
            member,
            "submit",
            "submit",
            parent_id,
            _bytes32(model_hash, "model hash"),
            uri,
            _bytes32(metadata_hash, "metadata hash"),
            checked_charge(epsilon_charge),
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

    def decide(self, caller: LocalAccount, model_id: int, votes: Sequence[SignedVote]) -> VoteOutcome:
        """Carries signed votes to the chain in one transaction; it must decide the candidate."""
        calls = [v.as_call() for v in in_signer_order(votes, self.domain)]
        tx = self._transact(caller, f"decide {model_id} with {len(calls)} signed votes", "decide", model_id, calls)
        return vote_outcome(tx, model_id)

    @property
    def domain(self) -> Domain:
        """Where this coalition's signed votes count."""
        return Domain(self.chain.chain_id, self.address)

    def expire(self, caller: LocalAccount, model_id: int) -> TxResult:
        tx = self._transact(caller, f"expire {model_id}", "expire", model_id)
        raise_if_staled(tx, model_id)
        return tx

    def mark_stale(self, caller: LocalAccount, model_id: int) -> TxResult:
        return self._transact(caller, f"mark {model_id} stale", "markStale", model_id)

    # ---- exports ---------------------------------------------------------------------------------------

    def record_export(
        self, member: LocalAccount, model_id: int, fingerprint: bytes, key_blob: bytes
    ) -> tuple[int, TxResult]:
        """`member` records, signed, that it took committed model `model_id` out with a copy fingerprinted
        (`fingerprint`: the commitment to its mark; `key_blob`: the vault hash of the sealed key); returns the
        export id and the transaction."""
        tx = self._transact(
            member,
            export_action(model_id),
            "recordExport",
            model_id,
            _bytes32(fingerprint, "fingerprint"),
            _bytes32(key_blob, "key blob"),
        )
        ev = tx.event("Exported")
        assert ev is not None, "a successful recordExport always emits Exported"
        return int(ev.args["exportId"]), tx

    def exports(self) -> list[ExportRecord]:
        """Every export recorded, in id order, from the `Exported` logs, each with its block's time."""
        events = events_named(self.w3, self.address, {"Exported"}, self.chain.latest_block())
        times = {b: int(self.w3.eth.get_block(b)["timestamp"]) for b in {e.block_number for e in events}}
        return sorted((export_record(e, times[e.block_number]) for e in events), key=lambda r: r.id)

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

    def global_test_set_hash(self) -> bytes:
        return bytes(self._view("globalTestSetHash"))

    def policy_hash(self) -> bytes:
        return bytes(self._view("policyHash"))

    def timeouts(self) -> tuple[int, int]:
        return int(self._view("generalTimeout")), int(self._view("votingTimeout"))

    def parameters(self) -> Parameters:
        return Parameters(
            self.policy_hash(),
            self.global_test_set_hash(),
            int(self._view("generalTimeout")),
            int(self._view("votingTimeout")),
            int(self._view("proposalTimeout")),
            int(self._view("minValidators")),
            int(self._view("epsilonCap")),
        )

    def proposal_count(self) -> int:
        return int(self._view("proposalCount"))

    def proposal(self, proposal_id: int) -> Proposal:
        """One proposal: its stored tally and state, its action and ballots from the logs."""
        p = self._view("getProposal", proposal_id)
        logs = self._proposal_logs(proposal_id)
        proposed = next(e for e in logs if e.name == "Proposed")
        ballots = tuple(
            BallotCast(e.args["member"], bool(e.args["approve"]), e.block_number) for e in logs if e.name == "Ballot"
        )
        return Proposal(
            id=proposal_id,
            action=decode_action(int(p[1]), bytes(proposed.args["action"])),
            action_hash=bytes(p[0]),
            state=effective_state(int(p[2]), int(p[7]), self.chain.timestamp()),
            proposer=str(p[3]),
            eligible=int(p[4]),
            approvals=int(p[5]),
            rejections=int(p[6]),
            deadline=int(p[7]),
            ballots=ballots,
        )

    def proposals(self) -> list[Proposal]:
        return [self.proposal(i) for i in range(self.proposal_count())]

    def has_ballot(self, proposal_id: int, member: str) -> bool:
        return bool(self._view("hasBallot", proposal_id, _address(member)))

    def _proposal_logs(self, proposal_id: int) -> list[LedgerEvent]:
        return events_about(self.w3, self.address, {"Proposed", "Ballot"}, proposal_id, self.chain.latest_block())

    def model_count(self) -> int:
        return int(self._view("modelCount"))

    def validator_count(self) -> int:
        return int(self._view("validatorCount"))

    def has_voted(self, model_id: int, validator: str) -> bool:
        return bool(self._view("hasVoted", model_id, _address(validator)))

    def privacy_spent(self, account: str) -> int:
        """The privacy `account`'s candidates were charged, epsilon in millionths (0 for a stranger)."""
        return int(self._view("privacyBudget", _address(account))[0])

    def privacy_charge(self, model_id: int) -> int:
        """What submitting `model_id` charged its proposer, epsilon in millionths, from its `PrivacySpent` event
        (0 when it has none)."""
        events = events_about(self.w3, self.address, {"PrivacySpent"}, model_id, self.chain.latest_block())
        return int(events[0].args["charge"]) if events else 0

    def model_id_of(self, model_hash: bytes) -> int | None:
        try:
            return int(self._view("modelIdOf", _bytes32(model_hash, "model hash")))
        except ContractRevert:
            return None

    def get_model(self, model_id: int, *, with_uri: bool = True) -> ModelRecord:
        """The model as stored; `with_uri` adds what only its `Submitted` event holds: URI and metadata hash."""
        m = self._view("getModel", model_id)
        submitted = self.submitted_event(model_id) if with_uri else None
        return ModelRecord(
            id=model_id,
            model_hash=bytes(m[0]),
            metadata_hash=None if submitted is None else bytes(submitted.args["metadataHash"]),
            proposer=m[1],
            parent_id=m[2],
            state=ModelState(m[3]),
            eligible=m[4],
            rejections=m[5],
            general=m[6],
            general_deadline=m[7],
            voting_deadline=m[8],
            approvals=m[9],
            uri=None if submitted is None else str(submitted.args["uri"]),
        )

    def submitted_event(self, model_id: int) -> LedgerEvent | None:
        """The `Submitted` event of `model_id`: its URI and metadata hash live there, not in storage."""
        events = events_about(self.w3, self.address, {"Submitted"}, model_id, self.chain.latest_block())
        return events[0] if events else None

    def model_uri(self, model_id: int) -> str | None:
        """The URI the proposer gave in `Submitted` (kept in the log, not in contract storage)."""
        event = self.submitted_event(model_id)
        return None if event is None else str(event.args["uri"])

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
            member_since=m[5],
            epsilon_spent=m[7],
            encryption_key=bytes(m[8]),
            name=m[9],
        )

    def members(self) -> list[Member]:
        """Every account ever registered, active or not, in registration order."""
        accounts = [self._view("memberAt", i) for i in range(int(self._view("memberCount")))]
        return [m for m in (self.get_member(a) for a in accounts) if m is not None]

    def events(self, from_block: int = 0, to_block: int | None = None) -> list[LedgerEvent]:
        end = self.chain.latest_block() if to_block is None else to_block
        return fetch_events(self.w3, self.address, from_block, end)
