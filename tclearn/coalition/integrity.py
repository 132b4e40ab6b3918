"""The general's decisions about a candidate's declared facts: pure functions over typed records.

The general fetches (the blobs, the parent's hash) and writes (the report, the transaction); what it decides
from what it fetched is here, testable on plain values.
"""

from __future__ import annotations

import math

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError
from tclearn.learning.privacy import check_delta, declared_spending, same_epsilon
from tclearn.ledger.values import epsilon_of, epsilon_units
from tclearn.records import CandidateMetadata, ModelDescription, Privacy
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


def privacy_problem(metadata: CandidateMetadata, policy: AcceptancePolicy, charged: int) -> str | None:
    """What is wrong with the candidate's differential privacy, or None: DP missing where the coalition requires it,
    a declaration that breaks the privacy policy or does not fit the training facts, an epsilon that is not what its
    mechanism spends (recomputed with the accountant), or a charge on chain (`charged`, millionths) that is not the
    declared epsilon."""
    declared, rules = metadata.privacy, policy.privacy
    if declared is None:
        if rules is not None and rules.required:
            return "the coalition requires differential privacy (DP-SGD); the candidate declares none"
        if charged:
            return f"its submission charged epsilon {epsilon_of(charged):g}, but it declares no differential privacy"
        return None
    problem = privacy_rules_problem(declared, policy) or _against_facts(declared, metadata) or _recomputed(declared)
    if problem:
        return problem
    if charged != epsilon_units(declared.epsilon):
        return f"it declares epsilon {declared.epsilon:g}, but its submission charged {epsilon_of(charged):g} on chain"
    return None


def privacy_rules_problem(declared: Privacy, policy: AcceptancePolicy) -> str | None:
    """What in declared privacy facts breaks the coalition's privacy policy (delta, accountant, noise); None if
    nothing (or the coalition has no privacy policy). The member asks it before training, the general after."""
    rules = policy.privacy
    if rules is None:
        return None
    if declared.delta != rules.delta:
        return f"it states epsilon at delta {declared.delta:g}; the coalition counts at delta {rules.delta:g}"
    if declared.accountant != rules.accountant:
        return f"it is accounted with {declared.accountant}; the coalition counts with {rules.accountant}"
    if declared.noise_multiplier < rules.min_noise_multiplier:
        return (
            f"its noise multiplier {declared.noise_multiplier:g} is below the coalition's minimum "
            f"{rules.min_noise_multiplier:g}"
        )
    return None


def _against_facts(declared: Privacy, metadata: CandidateMetadata) -> str | None:
    facts = metadata.training
    try:
        check_delta(declared.delta, declared.units)
    except ConfigError as exc:
        return f"its privacy declaration is invalid: {exc}"
    if declared.unit not in ("sample", "patient"):
        return f"its privacy unit {declared.unit!r} is neither sample nor patient"
    if declared.steps != facts.steps:
        return f"it declares {declared.steps} private steps, but {facts.steps} training steps"
    if declared.units < 1 or declared.units > facts.samples:
        return f"it declares {declared.units} privacy units for {facts.samples} samples"
    if declared.unit == "sample" and declared.units != facts.samples:
        return f"its privacy unit is the sample, but it declares {declared.units} units for {facts.samples} samples"
    expected = facts.batch_size / declared.units
    if not math.isclose(declared.sample_rate, expected, rel_tol=1e-9):
        return (
            f"it declares sample rate {declared.sample_rate:g}, but its batch of {facts.batch_size} over "
            f"{declared.units} units is {expected:g}"
        )
    if not declared.max_grad_norm > 0:
        return f"its clipping norm {declared.max_grad_norm:g} is not positive"
    return None


def _recomputed(declared: Privacy) -> str | None:
    try:
        spent = declared_spending(declared)
    except ConfigError as exc:
        return f"its privacy declaration cannot be accounted: {exc}"
    if not same_epsilon(declared.epsilon, spent):
        return (
            f"it declares epsilon {declared.epsilon:.6g}, but its mechanism (noise {declared.noise_multiplier:g}, "
            f"sample rate {declared.sample_rate:g}, {declared.steps} steps) spends {spent:.6g} at delta "
            f"{declared.delta:g} ({declared.accountant})"
        )
    return None
