"""The validators' evidence behind each vote, read from the vault for the report and the dashboard: why each
voted as it did and the candidate's and the head's score on every stratum of G and L (`VoteEvidence.strata`).

Evidence that is missing or does not parse is left out here: the audit (`tclearn.audit.verify`) names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tclearn.errors import TclearnError
from tclearn.ledger.history import CandidateHistory, LedgerHistory
from tclearn.records import StratumVerdict, VoteEvidence
from tclearn.vault.store import BlobStore

Evidence = dict[str, VoteEvidence]  # validator address -> its evidence on one candidate


def votes_evidence(store: BlobStore, candidate: CandidateHistory) -> Evidence:
    """The readable evidence of each vote on `candidate`, by validator."""
    found = {}
    for vote in candidate.votes:
        try:
            found[vote.validator] = VoteEvidence.parse(store.get(vote.evidence_hash.hex()))
        except TclearnError:
            continue
    return found


def all_evidence(
    store: BlobStore, history: LedgerHistory, model_ids: Iterable[int] | None = None
) -> dict[int, Evidence]:
    """`votes_evidence` of every voted-on model (or of `model_ids`), by model id."""
    ids = sorted(history.candidates) if model_ids is None else model_ids
    return {i: votes_evidence(store, history.candidates[i]) for i in ids if history.candidates[i].votes}


def stratum_outcome(s: StratumVerdict) -> str:
    """`ok`, `fails` (below the head beyond its tolerance, or not comparable) or `not judged` (too few samples)."""
    if not s.ok:
        return "fails"
    return "ok" if s.judged else "not judged"


def strata_json(evidence: VoteEvidence | None) -> list[dict[str, Any]]:
    """A vote's strata as the dashboard shows them (none without readable evidence)."""
    if evidence is None:
        return []
    return [{**s.to_json(), "outcome": stratum_outcome(s)} for s in evidence.strata]


def vote_details(evidence: Mapping[str, VoteEvidence], validator: str) -> dict[str, Any]:
    """What a vote's evidence adds to its view: the validator's reason and its strata."""
    found = evidence.get(validator)
    return {"reason": None if found is None else found.reason, "strata": strata_json(found)}
