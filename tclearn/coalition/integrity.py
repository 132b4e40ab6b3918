"""The general's decisions about a candidate's declared facts: pure functions over typed records.

The general fetches (the blobs, the parent's hash) and writes (the report, the transaction); what it decides
from what it fetched is here, testable on plain values.
"""

from __future__ import annotations

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.records import CandidateMetadata, ModelDescription
from tclearn.types import Variant


def declared_problem(
    metadata: CandidateMetadata, *, parent_hash: str, variant: Variant, model: ModelDescription
) -> str | None:
    """What the metadata declares wrongly about the candidate's parent, variant or model; None if nothing."""
    if metadata.parent != parent_hash:
        return f"metadata names parent {metadata.parent}, but the candidate's parent is {parent_hash}"
    if metadata.variant != variant.name:
        return f"metadata declares variant {metadata.variant}, the coalition is {variant.name}"
    if metadata.model != model:
        return f"metadata declares model {metadata.model.to_json()}, the coalition's is {model.to_json()}"
    return None


def policy_problem(metadata: CandidateMetadata, policy: AcceptancePolicy) -> str | None:
    """What in the declared training facts breaks the coalition's policy; None if nothing."""
    batch = metadata.training.batch_size
    if batch < policy.min_batch_size:
        return f"declared batch size {batch} is below the coalition's minimum {policy.min_batch_size}"
    return None
