"""A round, duty by duty: a member proposes (incremental mode) or the round's aggregator submits the members'
aggregate (FedAvg mode), the drawn general opens it, the eligible validators vote until it is decided (signed
votes: the validator whose vote completes a deciding set sends them all in one `decide`, whose gas is the row's
"votes"). Every step leaves its trace on chain and in the vault."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tclearn.coalition import general as general_duty
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.blobs import get_record
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.fedavg import Aggregator, contribute, propose_aggregate
from tclearn.coalition.member import Proposal, propose
from tclearn.errors import NotFoundError
from tclearn.records import CandidateMetadata, Contribution, TrainingFacts
from tclearn.types import ModelState, Role


@dataclass
class CandidateRow:
    """One candidate as every driver shows it and its summary records it: the demo (a row per candidate) and
    `coalition up` (a row per round, which may fail before a candidate exists: `id` None, `error` set)."""

    id: int | None
    proposer: str
    byzantine: bool
    attack: str = "none"  # what the proposer (FedAvg: the round's aggregator) does; "none": honest
    general: str = ""
    state: str = "submitted"
    approvals: int = 0
    rejections: int = 0
    score_global: float | None = None
    round: int | None = None  # the driver's round number, when it counts rounds
    job: str | None = None  # the member API's training job, when the round went through one
    seconds: float | None = None  # from the request to the decision, when the driver times it
    error: str | None = None  # why no candidate came of the round
    byzantine_kept: int = 0  # FedAvg: contributions of Byzantine members the aggregate combines
    excluded: int = 0  # FedAvg: contributions the aggregator left out (beyond the update bound, unreadable)
    gas: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "round": self.round,
            "proposer": self.proposer,
            "byzantine": self.byzantine,
            "attack": self.attack,
            "job": self.job,
            "general": self.general,
            "state": self.state,
            "approvals": self.approvals,
            "rejections": self.rejections,
            "score_global": None if self.score_global is None else round(self.score_global, 4),
            "seconds": self.seconds,
            "error": self.error,
            "byzantine_kept": self.byzantine_kept,
            "excluded": self.excluded,
        }


Update = Callable[["CandidateRow"], None]
Shares = list[tuple[Contribution, TrainingFacts]]
Collude = Callable[[Coalition, int, Shares], Shares]  # (coalition, head id, contributions) -> contributions


def validators_for(co: Coalition, proposer: Hospital) -> list[Hospital]:
    """The hospitals that may vote on `proposer`'s candidate, the general first (it opened it)."""
    eligible = []
    for h in co.hospitals:
        member = co.client.get_member(h.address)
        if h is not proposer and member is not None and member.active and Role.VALIDATOR in member.roles:
            eligible.append(h)
    return eligible


def decide(co: Coalition, proposal: Proposal, proposer: Hospital, byzantine: bool, update: Update) -> CandidateRow:
    """After a submission: the drawn general opens it (or rejects it), then validators vote until decided."""
    s = proposal.submission
    row = CandidateRow(s.model_id, proposer.name, byzantine, proposer.attack.value, co.name_of(s.general))
    row.gas["submit"] = s.tx.gas_used
    update(row)
    candidate = co.client.get_model(s.model_id)  # with its metadata hash, which the general and validators read
    general = co.hospital(candidate.general)
    ok, _, row.gas["open"] = general_duty.open_candidate(co, general, candidate)
    row.state = "open" if ok else "rejected"
    update(row)
    if not ok:
        return row
    for validator in sorted(validators_for(co, proposer), key=lambda h: h is not general):
        cast = validator_duty.vote(co, validator, candidate)
        if cast.late:  # decided meanwhile (another process holds validators too)
            row.state = co.client.get_model(s.model_id, with_uri=False).state.name.lower()
            update(row)
            break
        assessment = cast.assessment
        if assessment.candidate is not None:
            row.score_global = assessment.candidate.global_
        row.approvals += assessment.approve
        row.rejections += not assessment.approve
        if cast.outcome is not None:  # a direct vote, or the `decide` that carried the signed ones
            row.gas["votes"] = row.gas.get("votes", 0) + cast.outcome.tx.gas_used
            row.state = cast.outcome.state.name.lower()
        update(row)
        if cast.state not in (None, ModelState.OPEN):
            break
    return row


def run_round(co: Coalition, proposer: Hospital, on_update: Update | None = None) -> CandidateRow:
    """Incremental mode: `proposer`'s increment is the candidate."""
    return decide(co, propose(co, proposer), proposer, proposer.byzantine, on_update or _ignore)


def run_fedavg_round(
    co: Coalition,
    aggregator: Hospital,
    rule: Aggregator | None = None,
    on_update: Update | None = None,
    collude: Collude | None = None,
) -> CandidateRow:
    """FedAvg mode: every member contributes from the head; `aggregator` submits their aggregate, combined by
    `rule` (None: the coalition policy's aggregator). `collude` (simulations only) rewrites the round's
    contributions before aggregation, as coordinated Byzantine members would (`tclearn.simulation.collusion`)."""
    head = co.client.head()
    contributions = [contribute(co, h, head) for h in co.hospitals]
    if collude is not None:
        contributions = collude(co, head, contributions)
    proposal = propose_aggregate(co, aggregator, rule or Aggregator(co.policy.aggregator), contributions, head)
    aggregation = get_record(co, proposal.metadata_hash, CandidateMetadata).aggregation
    byzantine = {h.address for h in co.hospitals if h.byzantine}

    def counted(row: CandidateRow) -> None:
        if aggregation is not None:
            row.byzantine_kept = sum(c.member in byzantine for c in aggregation.contributions)
            row.excluded = len(aggregation.excluded)
        (on_update or _ignore)(row)

    return decide(co, proposal, aggregator, aggregator.byzantine, counted)


def _ignore(_row: CandidateRow) -> None:
    return None


def settle(contexts: Sequence[tuple[Coalition, Hospital]], model_id: int) -> ModelState:
    """The general's and the validators' duties on candidate `model_id`, each hospital in its own context (one per
    site, as separate services run them); returns the candidate's state afterwards (OPEN: still undecided)."""
    candidate = contexts[0][0].client.get_model(model_id)  # with its metadata hash
    by_address = {h.address: (co, h) for co, h in contexts}
    if candidate.general not in by_address:
        raise NotFoundError(f"the general of candidate {model_id}, {candidate.general}, is none of these sites")
    co, general = by_address[candidate.general]
    ok, _, _ = general_duty.open_candidate(co, general, candidate)
    if not ok:
        return ModelState.REJECTED
    for co, validator in sorted(contexts, key=lambda c: c[1].address != candidate.general):
        if validator.address == candidate.proposer:
            continue
        cast = validator_duty.vote(co, validator, candidate)
        if cast.late:
            return co.client.get_model(model_id, with_uri=False).state
        if cast.state not in (None, ModelState.OPEN):
            return cast.state
    return ModelState.OPEN
