"""The coalition's models as the member API shows them, rebuilt from the chain's events and cached.

The history is folded from events (`tclearn.ledger.history`) incrementally: a refresh reads only the blocks
after the last one read, at most every `ttl` seconds. While one request refreshes, others are served the
previous snapshot (`tclearn.ledger.snapshot.Refreshed`: never half-updated, read without a lock while fresh);
`GET /models` returns pre-encoded JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import TypeAdapter

from services.member.schemas import BudgetOut, ChargeOut, ModelDetail, ModelSummary, PrivacyOut, VoteOut
from tclearn.audit.privacy import budgets
from tclearn.errors import NotFoundError
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.history import CandidateHistory, LedgerHistory, ModelExport, PrivacyCharge, fold
from tclearn.ledger.snapshot import Refreshed
from tclearn.ledger.values import epsilon_of

_SUMMARIES = TypeAdapter(list[ModelSummary])


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def detail_of(h: LedgerHistory, c: CandidateHistory) -> ModelDetail:
    return ModelDetail(
        id=c.id,
        parent_id=c.parent_id,
        state=c.state.name.lower(),
        head=c.id == h.head,
        proposer=c.proposer,
        proposer_name=h.name_of(c.proposer),
        model_hash=c.model_hash.hex(),
        metadata_hash=c.metadata_hash.hex(),
        uri=c.uri,
        eligible=c.eligible,
        approvals=c.approvals,
        rejections=c.rejections,
        generals=c.generals,
        report_hash=_hex(c.report_hash),
        reject_reason=c.reject_reason.name.lower() if c.reject_reason else None,
        submitted_block=c.submitted_block,
        votes=[
            VoteOut(
                validator=v.validator,
                validator_name=h.name_of(v.validator),
                approve=v.approve,
                score_global=v.score_global,
                score_local=v.score_local,
                evidence_hash=v.evidence_hash.hex(),
                block=v.block,
            )
            for v in c.votes
        ],
    )


@dataclass(frozen=True)
class Snapshot:
    head: int
    active_members: int
    models: dict[int, ModelDetail]
    models_json: bytes  # GET /models, encoded once per change
    budgets: tuple[BudgetOut, ...] = ()
    charges: tuple[PrivacyCharge, ...] = ()
    epsilon_cap: int = 0
    exports: tuple[ModelExport, ...] = ()  # every export on chain, in id order

    @classmethod
    def of(cls, h: LedgerHistory) -> Snapshot:
        models = {c.id: detail_of(h, c) for c in h.candidates.values()}
        summaries = [ModelSummary(**m.model_dump(include=set(ModelSummary.model_fields))) for m in models.values()]
        return cls(
            h.head,
            sum(m.active for m in h.members.values()),
            models,
            _SUMMARIES.dump_json(summaries),
            tuple(BudgetOut.model_validate(b.view()) for b in budgets(h)),
            tuple(h.charges),
            h.epsilon_cap,
            tuple(h.exports),
        )

    def privacy(self, site: str) -> PrivacyOut:
        """Every member's budget and the charges of `site` (an address)."""
        own = [
            ChargeOut(
                model_id=c.model_id,
                state=self.models[c.model_id].state if c.model_id in self.models else "unknown",
                charge=epsilon_of(c.charge),
                charge_units=c.charge,
                spent_units=c.spent,
                cap_units=c.cap,
                block=c.block,
            )
            for c in self.charges
            if c.member.lower() == site.lower()
        ]
        cap = epsilon_of(self.epsilon_cap) if self.epsilon_cap else None
        return PrivacyOut(site=site, cap=cap, members=list(self.budgets), charges=own)

    def model(self, model_id: int) -> ModelDetail:
        found = self.models.get(model_id)
        if found is None:
            raise NotFoundError(f"the coalition has no model {model_id}", model_id=model_id)
        return found


class HistoryCache:
    def __init__(self, client: LedgerClient, ttl: float = 1.0) -> None:
        self.client, self.ttl = client, ttl
        self._history = LedgerHistory()
        self._next_block = 0
        self._snapshots = Refreshed(self._refresh, ttl)

    @property
    def fresh(self) -> bool:
        return self._snapshots.fresh

    def snapshot(self) -> Snapshot:
        """The latest snapshot; refreshed from the chain when older than `ttl` (blocking only the first time)."""
        return self._snapshots.get()

    def _refresh(self, previous: Snapshot | None) -> Snapshot:
        latest = self.client.chain.latest_block()
        events = self.client.events(self._next_block, latest) if latest >= self._next_block else []
        fold(self._history, events)
        self._next_block = latest + 1
        return Snapshot.of(self._history) if events or previous is None else previous
