"""`InMemoryLedger`: the Coalition contract's rules in plain Python, for unit tests of the duties and for
simulations that need no chain.

It follows contracts/Coalition.sol (v2: founders at deployment, no admin; governance in
`tclearn.ledger.memory.governance`) statement by statement: the same states, the same checks in the same
order (refusals are `ContractRevert`s worded as `LedgerClient` words the contract's custom errors), the
same eligible snapshot and quorum (`tclearn.protocol`), stale siblings marked when touched, and the same
events in the same order, so `tclearn.ledger.history.rebuild(ledger.events())` works on it; `decide` checks
signed votes as the contract does (`tclearn.ledger.votes.recover_signer` under `domain`). Two things differ on purpose:
the general is drawn from sha256(seed, id, previous general) instead of the block's randomness, and time
is a `MemoryChain` clock that tests move by hand. tests/ledger/test_ledger_backends.py runs one suite
against it and the real contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from tclearn.errors import ContractRevert
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.ledger import (
    ZERO_ADDRESS,
    ExportRecord,
    Predecessor,
    Submission,
    TxResult,
    VoteOutcome,
    bytes32,
    check_founders,
    checked_address,
    checked_charge,
    export_action,
    export_record,
    raise_if_staled,
    vote_outcome,
)
from tclearn.ledger.memory.blocks import MemoryChain, transaction
from tclearn.ledger.memory.governance import Governed
from tclearn.ledger.memory.members import ZERO32
from tclearn.ledger.reverts import refusal
from tclearn.ledger.votes import Domain, SignedVote, in_signer_order, recover_signer
from tclearn.protocol import is_committed, is_rejected, to_fixed
from tclearn.types import ModelRecord, ModelState, RejectReason, Role, Variant


@dataclass
class _Model:
    """A model as the contract stores it: the URI and the metadata hash are in its `Submitted` event only."""

    model_hash: bytes
    parent_id: int
    proposer: str
    general: str
    state: ModelState
    eligible: int = 0
    approvals: int = 0
    rejections: int = 0
    general_deadline: int = 0
    voting_deadline: int = 0
    voters: set[str] = field(default_factory=set)  # who voted with `vote` (the contract's vote bits)


class InMemoryLedger(Governed):
    """A coalition deployed by `deployer` on `chain`, held in memory; implements `Ledger`."""

    def __init__(
        self,
        chain: MemoryChain,
        deployer: LocalAccount,
        *,
        variant: Variant,
        genesis_hash: bytes,
        genesis_uri: str = "",
        parameters: Parameters,
        founders: Sequence[Admit],
        predecessor: Predecessor | None = None,
        seed: bytes = b"tclearn",
    ) -> None:
        check_founders(founders)
        if not 1 <= int(variant) <= 3:
            raise refusal("deploy", "InvalidVariant", {"variant": int(variant)})
        if bytes32(genesis_hash, "genesis hash") == ZERO32:
            raise refusal("deploy", "ZeroHash", {})
        super().__init__(chain, deployer, seed)
        self._variant = Variant(variant)
        self._head = 0
        self._models = [_Model(bytes(genesis_hash), 0, ZERO_ADDRESS, ZERO_ADDRESS, ModelState.COMMITTED)]
        self._id_by_hash = {bytes(genesis_hash): 0}
        self._submitted: dict[int, LedgerEvent] = {}  # the mined Submitted events: URIs and metadata hashes
        self._exports: list[ExportRecord] = []  # the contract keeps a count; the records are its Exported events
        self._set_parameters(parameters, "deploy")
        link = predecessor or Predecessor(0, ZERO_ADDRESS, 0)
        self._emit(
            "Founded",
            predecessorChainId=link.chain_id,
            predecessor=checked_address(link.coalition),
            predecessorHeadId=link.head_id,
            genesisHash=bytes(genesis_hash),
        )
        self._emit_submitted(0, self._models[0], deployer.address, genesis_uri, ZERO32)
        self._emit("Committed", id=0, parentId=0, modelHash=bytes(genesis_hash), approvals=0, rejections=0)
        for f in founders:
            self._admit(f.account, int(f.roles), f.encryption_key, f.name, "deploy")
        self._check_validators(len(self._validators), parameters.min_validators, "deploy")
        self.deployment = self._mine()

    @classmethod
    def deploy(cls, chain: MemoryChain, deployer: LocalAccount, **settings: Any) -> tuple[InMemoryLedger, TxResult]:
        """As `LedgerClient.deploy`: the new coalition and its deployment's result."""
        ledger = cls(chain, deployer, **settings)
        return ledger, ledger.deployment

    def _mine(self) -> TxResult:
        tx = super()._mine()
        self._submitted.update((e.args["id"], e) for e in tx.events if e.name == "Submitted")
        return tx

    def _emit_submitted(self, model_id: int, c: _Model, proposer: str, uri: str, metadata_hash: bytes) -> None:
        self._emit(
            "Submitted",
            id=model_id,
            parentId=c.parent_id,
            proposer=proposer,
            general=c.general,
            modelHash=c.model_hash,
            uri=uri,
            metadataHash=metadata_hash,
            eligible=c.eligible,
            generalDeadline=c.general_deadline,
        )

    @property
    def domain(self) -> Domain:
        """Where this coalition's signed votes count: its chain and its address."""
        return Domain(self.chain.chain_id, self.address)

    # ---- the round ---------------------------------------------------------------------------------------

    def _draw_seed(self, model_id: int, previous: str) -> int:
        material = self.seed + model_id.to_bytes(32, "big") + bytes.fromhex(previous[2:])
        return int.from_bytes(hashlib.sha256(material).digest(), "big")

    def _draw_first(self, model_id: int, proposer: str, eligible: int) -> str:
        r = self._draw_seed(model_id, ZERO_ADDRESS) % eligible
        if proposer in self._validators and r >= self._validators.index(proposer):
            r += 1  # the proposer's slot is skipped: every eligible validator is equally likely
        return self._validators[r]

    def _draw_next(self, model_id: int, proposer: str, previous: str) -> str | None:
        n = len(self._validators)
        start = self._draw_seed(model_id, previous) % n if n else 0
        for k in range(n):
            candidate = self._validators[(start + k) % n]
            if candidate not in (proposer, previous) and self._members[candidate].validator_since <= model_id:
                return candidate
        return None

    def _live(self, model_id: int, action: str) -> _Model:
        """The candidate; one pending on a parent that is no longer head is marked Stale first."""
        if not 0 <= model_id < len(self._models):
            raise self._refuse(action, "UnknownModel", id=model_id)
        c = self._models[model_id]
        if c.state in (ModelState.SUBMITTED, ModelState.OPEN) and c.parent_id != self._head:
            c.state = ModelState.STALE
            self._emit("Staled", id=model_id)
        return c

    def _wrong_state(self, action: str, model_id: int, c: _Model) -> ContractRevert:
        return self._refuse(action, "WrongState", id=model_id, state=c.state.name.lower())

    def _mine_unless_stale(self, model_id: int) -> TxResult:
        """Mines the transaction; one that only found its candidate stale is then refused as `Stale`."""
        tx = self._mine()
        raise_if_staled(tx, model_id)
        return tx

    @transaction
    def submit(
        self,
        member: LocalAccount,
        parent_id: int,
        model_hash: bytes,
        uri: str,
        metadata_hash: bytes,
        epsilon_charge: int = 0,
    ) -> Submission:
        model_hash, metadata_hash = bytes32(model_hash, "model hash"), bytes32(metadata_hash, "metadata hash")
        charge = checked_charge(epsilon_charge)
        proposer = member.address
        m = self._members.get(proposer)
        if m is None or not m.active or not m.roles & Role.MEMBER:
            raise self._refuse("submit", "NotMember", account=proposer)
        if parent_id != self._head:
            raise self._refuse("submit", "StaleParent", parentId=parent_id, head=self._head)
        if ZERO32 in (model_hash, metadata_hash):
            raise self._refuse("submit", "ZeroHash")
        if model_hash in self._id_by_hash:
            existing = self._id_by_hash[model_hash]
            raise self._refuse("submit", "DuplicateModel", modelHash="0x" + model_hash.hex(), existingId=existing)
        eligible = len(self._validators) - (proposer in self._validators)
        if eligible == 0:
            raise self._refuse("submit", "NoValidators")
        if charge:  # the contract checks after its writes (a refusal undoes them); here nothing is written yet
            self._check_spend(proposer, charge, "submit")
        model_id = len(self._models)
        general = self._draw_first(model_id, proposer, eligible)
        deadline = self.chain.timestamp() + self.parameters().general_timeout
        c = _Model(model_hash, parent_id, proposer, general, ModelState.SUBMITTED, eligible, general_deadline=deadline)
        self._models.append(c)
        self._id_by_hash[model_hash] = model_id
        self._emit_submitted(model_id, c, proposer, uri, metadata_hash)
        if charge:
            self._spend(proposer, model_id, charge)
        return Submission(model_id, general, eligible, deadline, self._mine())

    @transaction
    def open_candidate(self, general: LocalAccount, model_id: int, integrity_ok: bool, report_hash: bytes) -> TxResult:
        report, action = bytes32(report_hash, "report hash"), f"open candidate {model_id}"
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            if c.state is not ModelState.SUBMITTED:
                raise self._wrong_state(action, model_id, c)
            m = self._members.get(general.address)
            if m is None or not m.active or general.address != c.general:
                raise self._refuse(action, "NotGeneral", caller=general.address, general=c.general)
            if self.chain.timestamp() > c.general_deadline:
                raise self._refuse(action, "DeadlinePassed", id=model_id, deadline=c.general_deadline)
            if report == ZERO32:
                raise self._refuse(action, "ZeroHash")
            if integrity_ok:
                c.state, c.voting_deadline = ModelState.OPEN, self.chain.timestamp() + self.parameters().voting_timeout
                self._emit(
                    "CandidateOpened",
                    id=model_id,
                    general=general.address,
                    reportHash=report,
                    votingDeadline=c.voting_deadline,
                )
            else:
                c.state = ModelState.REJECTED
                self._emit("Rejected", id=model_id, reason=int(RejectReason.INTEGRITY), evidenceHash=report)
        return self._mine_unless_stale(model_id)

    @transaction
    def reassign_general(self, caller: LocalAccount, model_id: int) -> TxResult:
        action = f"reassign general of {model_id}"
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            if c.state is not ModelState.SUBMITTED:
                raise self._wrong_state(action, model_id, c)
            if self.chain.timestamp() <= c.general_deadline:
                raise self._refuse(action, "DeadlineNotReached", id=model_id, deadline=c.general_deadline)
            previous = c.general
            general = self._draw_next(model_id, c.proposer, previous)
            if general is None:
                raise self._refuse(action, "NoOtherGeneral", id=model_id)
            c.general, c.general_deadline = general, self.chain.timestamp() + self.parameters().general_timeout
            self._emit(
                "GeneralReassigned",
                id=model_id,
                previousGeneral=previous,
                general=general,
                generalDeadline=c.general_deadline,
            )
        return self._mine_unless_stale(model_id)

    @transaction
    def vote(
        self,
        validator: LocalAccount,
        model_id: int,
        approve: bool,
        score_global: float,
        score_local: float,
        evidence_hash: bytes,
    ) -> VoteOutcome:
        scores, evidence = (to_fixed(score_global), to_fixed(score_local)), bytes32(evidence_hash, "evidence hash")
        action, voter = f"vote on {model_id}", validator.address
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            self._check_open(action, model_id, c)
            self._eligible_voter(action, model_id, c, voter)
            if voter in c.voters:
                raise self._refuse(action, "AlreadyVoted", validator=voter, id=model_id)
            c.voters.add(voter)
            self._emit_vote(model_id, voter, approve, scores[0], scores[1], evidence)
            approvals, rejections = c.approvals + approve, c.rejections + (not approve)
            c.approvals, c.rejections = approvals, rejections
            self._conclude(model_id, c, approvals, rejections)
        return vote_outcome(self._mine(), model_id)

    @transaction
    def decide(self, caller: LocalAccount, model_id: int, votes: Sequence[SignedVote]) -> VoteOutcome:
        """As the contract's `decide`: every signature, signer's eligibility and uniqueness checked, every vote
        emitted, the candidate committed or rejected; a batch that decides nothing is refused (`NoDecision`).
        Signed votes leave no trace in `has_voted`."""
        ordered = in_signer_order(votes, self.domain)  # the client's order
        action = f"decide {model_id} with {len(ordered)} signed votes"
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            self._check_open(action, model_id, c)
            approvals, rejections, last = c.approvals, c.rejections, 0
            for i, v in enumerate(ordered):
                signed = SignedVote(**{**v.__dict__, "candidate": model_id, "model_hash": c.model_hash})
                signer = recover_signer(signed, self.domain)
                if signer is None:
                    raise self._refuse(action, "BadSignature", index=i)
                if int(signer, 16) <= last:
                    if int(signer, 16) == last:
                        raise self._refuse(action, "AlreadyVoted", validator=signer, id=model_id)
                    raise self._refuse(action, "UnsortedVotes", index=i)
                self._eligible_voter(action, model_id, c, signer)
                if signer in c.voters:
                    raise self._refuse(action, "AlreadyVoted", validator=signer, id=model_id)
                last = int(signer, 16)
                self._emit_vote(model_id, signer, v.approve, v.score_global, v.score_local, v.evidence_hash)
                approvals, rejections = approvals + v.approve, rejections + (not v.approve)
            if not self._conclude(model_id, c, approvals, rejections):
                raise self._refuse(
                    action, "NoDecision", id=model_id, approvals=approvals, rejections=rejections, eligible=c.eligible
                )
            c.approvals, c.rejections = approvals, rejections
        return vote_outcome(self._mine(), model_id)

    def _check_open(self, action: str, model_id: int, c: _Model) -> None:
        if c.state is not ModelState.OPEN:
            raise self._wrong_state(action, model_id, c)
        if self.chain.timestamp() > c.voting_deadline:
            raise self._refuse(action, "DeadlinePassed", id=model_id, deadline=c.voting_deadline)

    def _eligible_voter(self, action: str, model_id: int, c: _Model, voter: str) -> None:
        """Checks that `voter` may vote on `model_id` (not whether it has)."""
        m = self._members.get(voter)
        if m is None or not m.active or not m.roles & Role.VALIDATOR:
            raise self._refuse(action, "NotValidator", account=voter)
        if voter == c.proposer:
            raise self._refuse(action, "ProposerCannotVote", proposer=voter, id=model_id)
        if m.validator_since > model_id:
            raise self._refuse(action, "NotEligible", validator=voter, id=model_id)

    def _emit_vote(
        self, model_id: int, voter: str, approve: bool, score_global: int, score_local: int, evidence: bytes
    ) -> None:
        self._emit(
            "Voted",
            id=model_id,
            validator=voter,
            approve=approve,
            scoreGlobal=score_global,
            scoreLocal=score_local,
            evidenceHash=evidence,
        )

    def _conclude(self, model_id: int, c: _Model, approvals: int, rejections: int) -> bool:
        """Commits or rejects once the tally decides; False while it does not (state untouched)."""
        if is_committed(approvals, c.eligible):
            c.state, self._head = ModelState.COMMITTED, model_id
            self._emit(
                "Committed",
                id=model_id,
                parentId=c.parent_id,
                modelHash=c.model_hash,
                approvals=approvals,
                rejections=rejections,
            )
            return True
        if is_rejected(rejections, c.eligible):
            c.state = ModelState.REJECTED
            self._emit("Rejected", id=model_id, reason=int(RejectReason.VOTES), evidenceHash=ZERO32)
            return True
        return False

    @transaction
    def expire(self, caller: LocalAccount, model_id: int) -> TxResult:
        action = f"expire {model_id}"
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            if c.state is ModelState.SUBMITTED:
                deadline = c.general_deadline
            elif c.state is ModelState.OPEN:
                deadline = c.voting_deadline
            else:
                raise self._wrong_state(action, model_id, c)
            if self.chain.timestamp() <= deadline:
                raise self._refuse(action, "DeadlineNotReached", id=model_id, deadline=deadline)
            c.state = ModelState.EXPIRED
            self._emit("Expired", id=model_id)
        return self._mine_unless_stale(model_id)

    @transaction
    def mark_stale(self, caller: LocalAccount, model_id: int) -> TxResult:
        action = f"mark {model_id} stale"
        c = self._live(model_id, action)
        if c.state is not ModelState.STALE:
            raise self._wrong_state(action, model_id, c)
        return self._mine()

    # ---- exports ---------------------------------------------------------------------------------------------

    @transaction
    def record_export(
        self, member: LocalAccount, model_id: int, fingerprint: bytes, key_blob: bytes
    ) -> tuple[int, TxResult]:
        """As the contract's `recordExport`: an active member records the export of a committed model."""
        fingerprint, key_blob = bytes32(fingerprint, "fingerprint"), bytes32(key_blob, "key blob")
        action = export_action(model_id)
        m = self._members.get(member.address)
        if m is None or not m.active or not m.roles & Role.MEMBER:
            raise self._refuse(action, "NotMember", account=member.address)
        if not 0 <= model_id < len(self._models):
            raise self._refuse(action, "UnknownModel", id=model_id)
        c = self._models[model_id]
        if c.state is not ModelState.COMMITTED:
            raise self._refuse(action, "NotCommitted", id=model_id, state=c.state.name.lower())
        if ZERO32 in (fingerprint, key_blob):
            raise self._refuse(action, "ZeroHash")
        export_id = len(self._exports)
        self._emit(
            "Exported",
            exportId=export_id,
            modelId=model_id,
            member=member.address,
            fingerprint=fingerprint,
            keyBlob=key_blob,
        )
        tx = self._mine()
        self._exports.append(export_record(tx.events[0], self.chain.timestamp()))
        return export_id, tx

    def exports(self) -> list[ExportRecord]:
        """Every export recorded, in id order, each with the clock's time when it was mined."""
        with self._lock:
            return list(self._exports)

    # ---- views of the models -----------------------------------------------------------------------------

    def head(self) -> int:
        return self._head

    def variant(self) -> Variant:
        return self._variant

    def model_count(self) -> int:
        return len(self._models)

    def has_voted(self, model_id: int, validator: str) -> bool:
        address = checked_address(validator)
        return 0 <= model_id < len(self._models) and address in self._models[model_id].voters

    def privacy_charge(self, model_id: int) -> int:
        """What submitting `model_id` charged its proposer (epsilon in millionths), from its `PrivacySpent` event."""
        with self._lock:
            charges = (e.args["charge"] for e in self._log if e.name == "PrivacySpent" and e.args["id"] == model_id)
            return next(charges, 0)

    def model_id_of(self, model_hash: bytes) -> int | None:
        return self._id_by_hash.get(bytes32(model_hash, "model hash"))

    def get_model(self, model_id: int, *, with_uri: bool = True) -> ModelRecord:
        if not 0 <= model_id < len(self._models):
            raise refusal("getModel", "UnknownModel", {"id": model_id})
        c, submitted = self._models[model_id], self._submitted[model_id].args if with_uri else None
        return ModelRecord(
            id=model_id,
            parent_id=c.parent_id,
            model_hash=c.model_hash,
            metadata_hash=None if submitted is None else submitted["metadataHash"],
            proposer=c.proposer,
            general=c.general,
            state=c.state,
            eligible=c.eligible,
            approvals=c.approvals,
            rejections=c.rejections,
            general_deadline=c.general_deadline,
            voting_deadline=c.voting_deadline,
            uri=None if submitted is None else submitted["uri"],
        )
