"""The validator's duty: score the candidate on G and on its own L, compare with the head, store the
evidence and vote. A candidate that cannot be opened or decoded is rejected with that as evidence. In variant C
the scores come from encrypted inference, the supervisor decrypting only each set's aggregate accuracy."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from tclearn.coalition import encrypted
from tclearn.coalition.blobs import get_json, load_model, put_json
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.fedavg import verify_aggregate
from tclearn.coalition.policy import Scores
from tclearn.errors import TclearnError
from tclearn.learning.evaluate import evaluate, headline_metric
from tclearn.learning.models import build_model
from tclearn.ledger.client import VoteOutcome
from tclearn.types import ModelRecord, Variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    approve: bool
    candidate: Scores | None  # None: the candidate could not be opened
    head: Scores
    reason: str


def scores_of(co: Coalition, validator: Hospital, weights: dict[str, torch.Tensor]) -> Scores:
    model = build_model(co.model)
    model.load_state_dict(weights)
    with co.clock("evaluation"):
        return Scores(evaluate(model, co.global_test).score, evaluate(model, validator.local_test).score)


def model_scores(co: Coalition, validator: Hospital, model_hash: str) -> Scores:
    """A stored model's scores on G and the validator's L (variant C: by encrypted inference)."""
    if co.variant is Variant.C:
        return encrypted.scores(co, validator, model_hash)
    return scores_of(co, validator, load_model(co, validator, model_hash))


def head_scores(co: Coalition, validator: Hospital, model_id: int) -> Scores:
    """The head's scores as this validator measured them (cached: the head is scored once per validator)."""
    key = (validator.address, model_id)
    if key not in co.head_scores:
        record = co.client.get_model(model_id, with_uri=False)
        co.head_scores[key] = model_scores(co, validator, record.model_hash.hex())
    return co.head_scores[key]


def assess(co: Coalition, validator: Hospital, candidate: ModelRecord) -> Assessment:
    head = head_scores(co, validator, candidate.parent_id)
    model_hash = candidate.model_hash.hex()
    try:
        metadata = get_json(co, candidate.metadata_hash.hex())
        if co.variant is Variant.C:
            scores = encrypted.scores(co, validator, model_hash)
        else:
            weights = load_model(co, validator, model_hash)
    except TclearnError as exc:
        return Assessment(False, None, head, f"cannot open the candidate: {exc}")
    if co.variant is not Variant.C:
        if metadata.get("mode") == "fedavg":
            problem = verify_aggregate(co, validator, metadata, candidate.parent_id, weights)
            if problem is not None:
                log.warning("candidate %d: %s", candidate.id, problem)
                return Assessment(False, None, head, problem)
        scores = scores_of(co, validator, weights)
    co.head_scores[(validator.address, candidate.id)] = scores  # if it commits, it is the next head
    approve = co.policy.accepts(scores, head)
    reason = "not worse than the head beyond tolerance" if approve else "worse than the head beyond tolerance"
    return Assessment(approve, scores, head, reason)


def metric_name(co: Coalition) -> str:
    return headline_metric(co.global_test.task)


def vote(co: Coalition, validator: Hospital, candidate: ModelRecord) -> tuple[Assessment, VoteOutcome]:
    a = assess(co, validator, candidate)
    evidence = {
        "candidate": candidate.id,
        "parent": candidate.parent_id,
        "validator": validator.address,
        "metric": metric_name(co),
        "candidate_scores": None
        if a.candidate is None
        else {"global": a.candidate.global_, "local": a.candidate.local},
        "head_scores": {"global": a.head.global_, "local": a.head.local},
        "tolerance": {"global": co.policy.tolerance_global, "local": co.policy.tolerance_local},
        "local_samples": len(validator.local_test),
        "approve": a.approve,
        "reason": a.reason,
    }
    evidence_hash = put_json(co, evidence)
    shown = a.candidate or Scores(0.0, 0.0)
    with co.clock("ledger"):
        outcome = co.client.vote(
            validator.account, candidate.id, a.approve, shown.global_, shown.local, bytes.fromhex(evidence_hash)
        )
    return a, outcome
