"""The validator's duty: score the candidate on G and on its own L, compare with the head, store the evidence
and vote. A candidate that cannot be opened, or an aggregate that is not what it declares, is rejected with
that as evidence. The backend opens and scores the model, whatever the variant (in C by encrypted inference,
the supervisor decrypting only the aggregate accuracy of each class of a set); the verdict is the pure
acceptance policy, and the evidence shows every stratum of G and L it compared (`stratum_verdicts`).

The vote is signed and posted to the vault's ballot box (`ballots.py`), and the validator sends the deciding set if
its vote completes one (it pays that gas); with the coalition's `votes = "direct"` it is one `vote` transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tclearn.coalition import ballots
from tclearn.coalition.blobs import get_record, metadata_hash, put_record
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.fedavg import verify_aggregate
from tclearn.coalition.policy import Lineage, Scores, Stratum
from tclearn.errors import TclearnError
from tclearn.learning.evaluate import headline_metric, set_metric
from tclearn.ledger.ledger import VoteOutcome
from tclearn.ledger.votes import SignedVote, sign_vote
from tclearn.protocol import GENESIS
from tclearn.records import CandidateMetadata, VoteEvidence
from tclearn.types import ModelRecord, ModelState, VoteMode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    approve: bool
    candidate: Scores | None  # None: the candidate could not be opened, or failed a check before scoring
    head: Scores
    reason: str
    best_global: float | None = None  # the best G score of the head's lineage, as this validator measured it
    proposer_change: float | None = None  # what the proposer's committed increments changed G by, in all


def scores_of(co: Coalition, validator: Hospital, model: Any, ref: str) -> Scores:
    """An opened model's scores on G and on the validator's L, and on each stratum of both."""
    on_g = co.backend.score(validator, model, co.global_test, ref)
    on_l = co.backend.score(validator, model, validator.local_test, ref)
    strata = tuple(
        Stratum(name, s.name, s.samples, s.score) for name, on in (("G", on_g), ("L", on_l)) for s in on.strata
    )
    return Scores(on_g.score, on_l.score, strata)


def head_scores(co: Coalition, validator: Hospital, model_id: int) -> Scores:
    """The head's scores as this validator measured them (cached: the head is scored once per validator)."""
    key = (validator.address, model_id)
    if key not in co.head_scores:
        model_hash = co.client.get_model(model_id, with_uri=False).model_hash.hex()
        co.head_scores[key] = scores_of(co, validator, co.backend.open(validator, model_hash), model_hash)
    return co.head_scores[key]


def lineage_of(co: Coalition, validator: Hospital, head_id: int) -> Lineage:
    """The committed lineage from genesis to `head_id` as this validator measures it (`Lineage`: the best G, each
    proposer's change of G in all); every model scored once, the lineage of each head kept, so that a vote walks
    back only to the last head this validator saw."""
    walked: list[ModelRecord] = []
    model_id: int | None = head_id
    while model_id is not None and (validator.address, model_id) not in co.lineage:
        record = co.client.get_model(model_id, with_uri=False)
        walked.append(record)
        model_id = record.parent_id if model_id != GENESIS else None
    lineage = co.lineage[(validator.address, model_id)] if model_id is not None else Lineage(float("-inf"))
    for record in reversed(walked):
        score = head_scores(co, validator, record.id).global_
        if record.id == GENESIS:
            lineage = Lineage(score)
        else:
            lineage = lineage.then(record.proposer, score, head_scores(co, validator, record.parent_id).global_)
        co.lineage[(validator.address, record.id)] = lineage
    return lineage


def assess(co: Coalition, validator: Hospital, candidate: ModelRecord) -> Assessment:
    head = head_scores(co, validator, candidate.parent_id)
    lineage = lineage_of(co, validator, candidate.parent_id)
    best = lineage.best
    model_hash = candidate.model_hash.hex()
    try:
        metadata = get_record(co, metadata_hash(co, candidate), CandidateMetadata)
        model = co.backend.open(validator, model_hash)
    except TclearnError as exc:
        return Assessment(False, None, head, f"cannot open the candidate: {exc}", best)
    if metadata.aggregation is not None:
        problem = verify_aggregate(co, validator, metadata.aggregation, candidate.parent_id, model)
        if problem is not None:
            log.warning("candidate %d: %s", candidate.id, problem)
            return Assessment(False, None, head, problem, best)
    scores = scores_of(co, validator, model, model_hash)
    co.head_scores[(validator.address, candidate.id)] = scores  # if it commits, it is the next head
    change = lineage.changes.get(candidate.proposer, 0.0)
    approve, reason = co.policy.verdict(
        scores,
        head,
        best,
        genesis=candidate.parent_id == GENESIS,
        proposer_change=change,
    )
    return Assessment(approve, scores, head, reason, best, change)


def metric_name(co: Coalition) -> str:
    return headline_metric(co.global_test.task)


def evidence_of(co: Coalition, validator: Hospital, candidate: ModelRecord, a: Assessment) -> VoteEvidence:
    return VoteEvidence(
        candidate=candidate.id,
        parent=candidate.parent_id,
        validator=validator.address,
        metric=metric_name(co),
        candidate_global=None if a.candidate is None else a.candidate.global_,
        candidate_local=None if a.candidate is None else a.candidate.local,
        head_global=a.head.global_,
        head_local=a.head.local,
        tolerance_global=co.policy.tolerance_global,
        tolerance_local=co.policy.tolerance_local,
        local_samples=len(validator.local_test),
        approve=a.approve,
        reason=a.reason,
        local_metric=set_metric(validator.local_test),
        strata=co.policy.stratum_verdicts(a.candidate, a.head, genesis=candidate.parent_id == GENESIS),
        best_global=a.best_global,
        proposer_change=a.proposer_change,
        max_drift=co.policy.max_drift,
        policy=co.policy.sha256(),
    )


@dataclass(frozen=True)
class Cast:
    """What a validator's vote did."""

    assessment: Assessment
    # the transaction that carried the vote (direct) or sent the deciding set (signed); None: signed, and the
    # candidate is undecided or was decided by another
    outcome: VoteOutcome | None
    signed: SignedVote | None = None  # the vote posted to the ballot box (None: cast directly, or late)
    late: bool = False  # the candidate was decided before the vote was posted: it was not

    @property
    def state(self) -> ModelState | None:
        """What the vote's transaction left the candidate in, if this validator sent one."""
        return None if self.outcome is None else self.outcome.state


def vote(co: Coalition, validator: Hospital, candidate: ModelRecord) -> Cast:
    """Assesses `candidate` and casts `validator`'s vote, as the coalition's `votes` setting says."""
    a = assess(co, validator, candidate)
    evidence_hash = bytes.fromhex(put_record(co, evidence_of(co, validator, candidate, a)))
    shown = a.candidate or Scores(0.0, 0.0)
    if co.votes is VoteMode.DIRECT:
        with co.clock("ledger"):
            outcome = co.client.vote(
                validator.account, candidate.id, a.approve, shown.global_, shown.local, evidence_hash
            )
        return Cast(a, outcome)
    with co.clock("ledger"):
        state = co.client.get_model(candidate.id, with_uri=False).state
    if state is not ModelState.OPEN:  # decided while this validator assessed it
        log.info("candidate %d is %s: %s's vote is not posted", candidate.id, state.name.lower(), validator.name)
        return Cast(a, None, late=True)
    signed = sign_vote(
        validator.account,
        co.client.domain,
        candidate.id,
        candidate.model_hash,
        a.approve,
        shown.global_,
        shown.local,
        evidence_hash,
    )
    ballots.publish(co, signed)
    return Cast(a, ballots.try_decide(co, validator.account, candidate), signed)
