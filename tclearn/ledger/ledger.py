"""The `Ledger` interface the coalition duties work against, its result records, and the checks every
implementation shares.

Two implementations: `tclearn.ledger.client.LedgerClient` (the Coalition contract on a chain) and
`tclearn.ledger.memory.InMemoryLedger` (the same rules in plain Python, for unit tests of the duties and
for simulations). One test suite (tests/ledger/test_ledger_backends.py) runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from eth_account.signers.local import LocalAccount

from tclearn.errors import ConfigError, ContractRevert
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.values import ZERO_ADDRESS as ZERO_ADDRESS  # re-exported: the checks implementations share
from tclearn.ledger.values import bytes32 as bytes32
from tclearn.ledger.values import checked_address as checked_address
from tclearn.types import Member, ModelRecord, ModelState, Variant

if TYPE_CHECKING:  # governance and votes build on this module's helpers
    from tclearn.ledger.governance import Action, Parameters, Proposal
    from tclearn.ledger.votes import Domain, SignedVote


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[LedgerEvent, ...]

    def event(self, name: str) -> LedgerEvent | None:
        return next((e for e in self.events if e.name == name), None)

    def has(self, name: str) -> bool:
        return self.event(name) is not None


@dataclass(frozen=True)
class Submission:
    model_id: int
    general: str
    eligible: int
    general_deadline: int
    tx: TxResult


@dataclass(frozen=True)
class ModelExport:
    """An `Exported` event: `member` (checksummed) took committed model `model_id` out, signed by its account;
    `fingerprint` commits to the mark its copy carries, `key_blob` is the vault hash of the sealed fingerprint key."""

    id: int
    model_id: int
    member: str
    fingerprint: bytes
    key_blob: bytes
    block: int


@dataclass(frozen=True)
class ExportRecord(ModelExport):
    """An export as a ledger reads it back (`recordExport`): the event and its block's time."""

    timestamp: int


@dataclass(frozen=True)
class Predecessor:
    """The coalition a migrated one continues: its chain, its contract and the head its genesis is."""

    chain_id: int
    coalition: str
    head_id: int


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote did: recorded, and whether it decided the candidate."""

    state: ModelState  # OPEN (still undecided), COMMITTED, REJECTED or STALE
    tx: TxResult


class LedgerChain(Protocol):
    """What the duties ask of the chain a ledger lives on."""

    @property
    def chain_id(self) -> int: ...

    @property
    def kind(self) -> str: ...  # "embedded", "memory" or a JSON-RPC URL

    @property
    def embedded(self) -> bool: ...  # lives inside this process: development keys are fine

    def timestamp(self) -> int: ...  # the latest block's time, which deadlines are measured against


class Ledger(Protocol):
    """The coalition's ledger: membership, the candidates' rounds and the history of both.

    Every write is made by the account passed in (`account.address` is the sender) and either happens
    whole or raises `ContractRevert` naming the contract's custom error, changing nothing.
    """

    @property
    def address(self) -> str: ...

    @property
    def chain(self) -> LedgerChain: ...

    # ---- governance: no admin; proposals carried by 2/3 of the active members ---------------------------

    def propose(self, member: LocalAccount, action: Action) -> Proposal: ...

    def ballot(self, member: LocalAccount, proposal_id: int, approve: bool) -> TxResult: ...

    def execute(self, caller: LocalAccount, proposal_id: int) -> TxResult: ...

    def proposal(self, proposal_id: int) -> Proposal: ...

    def proposals(self) -> list[Proposal]: ...

    def parameters(self) -> Parameters: ...

    # ---- the round ---------------------------------------------------------------------------------

    def submit(
        self,
        member: LocalAccount,
        parent_id: int,
        model_hash: bytes,
        uri: str,
        metadata_hash: bytes,
        epsilon_charge: int = 0,
    ) -> Submission: ...  # epsilon_charge: the privacy its training spent, epsilon in millionths (`OverBudget`)

    def open_candidate(
        self, general: LocalAccount, model_id: int, integrity_ok: bool, report_hash: bytes
    ) -> TxResult: ...

    def reassign_general(self, caller: LocalAccount, model_id: int) -> TxResult: ...

    def vote(
        self,
        validator: LocalAccount,
        model_id: int,
        approve: bool,
        score_global: float,
        score_local: float,
        evidence_hash: bytes,
    ) -> VoteOutcome: ...

    def decide(self, caller: LocalAccount, model_id: int, votes: Sequence[SignedVote]) -> VoteOutcome: ...

    @property
    def domain(self) -> Domain: ...  # where this coalition's signed votes count (`tclearn.ledger.votes`)

    def expire(self, caller: LocalAccount, model_id: int) -> TxResult: ...

    def mark_stale(self, caller: LocalAccount, model_id: int) -> TxResult: ...

    # ---- views -------------------------------------------------------------------------------------

    def head(self) -> int: ...

    def variant(self) -> Variant: ...

    def policy_hash(self) -> bytes: ...  # sha256 of the acceptance policy record every validator applies

    def model_count(self) -> int: ...

    def validator_count(self) -> int: ...

    def get_model(self, model_id: int, *, with_uri: bool = True) -> ModelRecord: ...

    def get_member(self, account: str) -> Member | None: ...

    def members(self) -> list[Member]: ...

    def has_voted(self, model_id: int, validator: str) -> bool: ...

    def privacy_spent(self, account: str) -> int: ...  # epsilon in millionths, the plain sum of its charges

    def privacy_charge(self, model_id: int) -> int: ...  # charged when `model_id` was submitted (0: none)

    def events(self, from_block: int = 0, to_block: int | None = None) -> list[LedgerEvent]: ...

    # ---- exports: committed models taken out for use --------------------------------------------------

    def record_export(
        self, member: LocalAccount, model_id: int, fingerprint: bytes, key_blob: bytes
    ) -> tuple[int, TxResult]: ...  # the export id (0, 1, ...) and the transaction

    def exports(self) -> list[ExportRecord]: ...  # every export recorded, in id order


# ---- shared by the implementations --------------------------------------------------------------------


def check_founders(founders: Sequence[object]) -> None:
    """A coalition needs a founder: nobody could change one that has none."""
    if not founders:
        raise ConfigError("a coalition needs at least one founder: nobody could change it afterwards")


def checked_charge(units: int) -> int:
    """A privacy charge as `submit` takes it: epsilon in millionths, a uint64 (`values.epsilon_units`)."""
    if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units < 2**64:
        raise ConfigError(
            f"an epsilon charge is epsilon in millionths, 0..2**64-1 (tclearn.ledger.values.epsilon_units), "
            f"got {units!r}"
        )
    return units


def export_record(ev: LedgerEvent, timestamp: int) -> ExportRecord:
    """The `ExportRecord` an `Exported` event holds, mined at `timestamp`."""
    a = ev.args
    return ExportRecord(
        a["exportId"], a["modelId"], a["member"], a["fingerprint"], a["keyBlob"], ev.block_number, timestamp
    )


def export_action(model_id: int) -> str:
    """What a refused `record_export` says it tried."""
    return f"record the export of model {model_id}"


def raise_if_staled(tx: TxResult, model_id: int) -> None:
    """A call that only found its candidate stale (and marked it so) is refused as `Stale`: rebase."""
    if tx.has("Staled"):
        raise ContractRevert(
            f"candidate {model_id} is stale: another candidate on its parent was committed; nothing else done",
            error="Stale",
            args={"id": model_id},
        )


def vote_outcome(tx: TxResult, model_id: int) -> VoteOutcome:
    """What a vote transaction did, read from its events."""
    raise_if_staled(tx, model_id)
    state = ModelState.OPEN
    if tx.has("Committed"):
        state = ModelState.COMMITTED
    elif tx.has("Rejected"):
        state = ModelState.REJECTED
    return VoteOutcome(state, tx)
