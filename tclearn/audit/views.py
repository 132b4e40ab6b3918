"""JSON views of a coalition's history for the auditor: lineage, one model with its votes, scores on G over time.

Pure functions of a `LedgerHistory` (and, for one model, its blob checks and its votes' evidence), so they are
tested on plain values and the auditor service only serialises them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tclearn.audit.evidence import Evidence, vote_details
from tclearn.audit.integrity import BlobCheck, candidate_of
from tclearn.audit.plots import mean_score_global
from tclearn.ledger.history import LedgerHistory, candidate_json
from tclearn.types import ModelState


def _names(history: LedgerHistory, addresses: Iterable[str]) -> dict[str, str]:
    return {a: history.name_of(a) for a in addresses}


def lineage_json(history: LedgerHistory) -> dict[str, Any]:
    """Every model (without its votes) with its state and parent, and the committed chain from genesis to head."""
    models = []
    for c in sorted(history.candidates.values(), key=lambda c: c.id):
        view = candidate_json(c)
        del view["votes"]
        view["general"] = c.general
        view["mean_score_global"] = mean_score_global(c)
        view["names"] = _names(history, [c.proposer, *c.generals])
        models.append(view)
    committed = [c.id for c in history.candidates.values() if c.state == ModelState.COMMITTED]
    return {
        "head": history.head,
        "lineage": history.lineage() if history.candidates else [],
        "committed": sorted(committed),
        "members": [
            {"address": m.address, "name": m.name, "roles": m.roles.names(), "active": m.active}
            for m in history.members.values()
        ],
        "models": models,
    }


def model_json(
    history: LedgerHistory, model_id: int, blobs: list[BlobCheck], evidence: Evidence | None = None
) -> dict[str, Any]:
    """One model with its votes (scores, evidence hashes, validator names; from `evidence`, each validator's
    reason and its strata) and the last checks of its blobs."""
    c = candidate_of(history, model_id)
    view = candidate_json(c)
    for vote in view["votes"]:
        vote.update(vote_details(evidence or {}, vote["validator"]))
    view["general"] = c.general
    view["mean_score_global"] = mean_score_global(c)
    view["names"] = _names(history, [c.proposer, *c.generals, *(v.validator for v in c.votes)])
    view["children"] = sorted(x.id for x in history.candidates.values() if x.parent_id == c.id and x.id != c.id)
    view["blobs"] = [b.to_json() for b in blobs if b.model_id == model_id]
    return view


def scores_json(history: LedgerHistory) -> list[dict[str, Any]]:
    """The score on G of every voted-on model, in submission order: mean, lowest and highest of its votes.

    `committed` marks the models on the lineage, whose scores are the coalition's score on G over time.
    """
    points = []
    for c in sorted(history.candidates.values(), key=lambda c: (c.submitted_block, c.id)):
        if not c.votes:
            continue
        scores = [v.score_global for v in c.votes]
        points.append(
            {
                "id": c.id,
                "state": c.state.name.lower(),
                "committed": c.state == ModelState.COMMITTED,
                "block": c.submitted_block,
                "mean": mean_score_global(c),
                "min": min(scores),
                "max": max(scores),
            }
        )
    return points
