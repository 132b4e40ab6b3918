"""FedAvg mode: one synchronous round per candidate, with verifiable aggregation and no extra contract calls.

Every member trains from the same head and stores its *contribution* in the vault (sealed for all members
in variant B), signed with its Ethereum key over (chain id, contract, parent id, contribution hash). The
round's aggregator combines them (FedAvg, coordinate-wise median or trimmed mean) and submits the result;
the candidate's metadata lists every contribution with its signature. Before combining, the aggregator
measures each contribution's distance from the head and leaves out those beyond the policy's `max_update` or
that cannot be opened (non-finite values included), listing each with its reason. Validators re-check every
listed contribution and every exclusion, recompute the aggregate and reject any mismatch before they score it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch
from eth_account import Account
from eth_account.messages import encode_defunct

from tclearn import __version__
from tclearn.coalition.backend import StateDict, TensorBackend, tensors
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.member import Proposal, submit
from tclearn.errors import AggregationError, ConfigError, TclearnError
from tclearn.learning import aggregate
from tclearn.learning.choices import Aggregator
from tclearn.learning.update import update_norm
from tclearn.records import Aggregation, CandidateMetadata, Contribution, Exclusion, TrainingFacts

DOMAIN = "tclearn-contribution-v1"
log = logging.getLogger(__name__)


def message(chain_id: int, contract: str, parent_id: int, model_hash: str) -> str:
    """The text a member signs for its contribution: binds it to one coalition, one parent, one blob."""
    return f"{DOMAIN}\n{chain_id}\n{contract.lower()}\n{parent_id}\n{model_hash}"


def _backend(co: Coalition) -> TensorBackend:
    return tensors(co.backend, "FedAvg mode")


def contribute(co: Coalition, member: Hospital, head_id: int) -> tuple[Contribution, TrainingFacts]:
    """`member` trains from the head, stores its contribution and signs it; refused (`ConfigError`) before any
    training in a coalition with privacy rules or by a member training with DP-SGD: an aggregate's privacy is its
    contributions', which FedAvg mode does not account (DP coalitions run in incremental mode)."""
    if co.policy.privacy is not None or co.backend.private:
        raise ConfigError(
            f"{member.name}: FedAvg mode does not account differential privacy (an aggregate would spend each "
            "contributor's epsilon, which neither it nor the chain charges); a DP coalition runs in incremental mode"
        )
    backend = _backend(co)
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    parent = backend.open(member, parent_hash)
    seed = co.client.model_count()  # a round on the same head again (its aggregate rejected) trains anew
    trained = backend.train(member, parent, seed=seed, ref=parent_hash)
    return signed(co, member, head_id, parent, trained.model, trained.facts), trained.facts


def signed(
    co: Coalition, member: Hospital, head_id: int, parent: StateDict, weights: StateDict, facts: TrainingFacts
) -> Contribution:
    """`weights` stored as `member`'s contribution to the round on `head_id`, signed, its update size declared."""
    model_hash = _backend(co).store_model(weights)
    text = message(co.client.chain.chain_id, co.client.address, head_id, model_hash)
    signature = member.account.sign_message(encode_defunct(text=text)).signature.hex()
    return Contribution(
        member.address,
        model_hash,
        facts.samples,
        facts.batch_size,
        signature if signature.startswith("0x") else "0x" + signature,
        update_norm(parent, weights),
    )


def combine(rule: Aggregator, states: Sequence[tuple[StateDict, int]]) -> StateDict:
    if rule is Aggregator.FEDAVG:
        return aggregate.fedavg(states)
    if rule is Aggregator.MEDIAN:
        return aggregate.median([s for s, _ in states])
    return aggregate.trimmed_mean([s for s, _ in states], trim=0.25)


def screen(
    co: Coalition, reader: Hospital, parent: StateDict, contribution: Contribution
) -> tuple[StateDict | None, str | None]:
    """The contribution opened, and why it must be left out of the aggregate (None: it may go in); a contribution
    that cannot be opened (missing, undecodable, non-finite) is `(None, why)`. Only the measured size counts: the
    declared one is not signed."""
    try:
        state = _backend(co).open(reader, contribution.model_hash)
        return state, co.policy.bound_problem(update_norm(parent, state))
    except TclearnError as exc:
        return None, f"cannot be opened: {exc}"


def aggregate_of(co: Coalition, rule: Aggregator, states: Sequence[tuple[StateDict, int]]) -> StateDict:
    with co.clock("training"):
        return combine(rule, states)


def aggregate_facts(facts: Sequence[TrainingFacts]) -> TrainingFacts:
    """What an aggregate declares: every sample and step of its contributions, and the smallest batch."""
    return dataclasses.replace(
        facts[0],
        samples=sum(f.samples for f in facts),
        batch_size=min(f.batch_size for f in facts),
        steps=sum(f.steps for f in facts),
        duration_s=round(sum(f.duration_s for f in facts), 3),
        final_loss=None,
    )


def propose_aggregate(
    co: Coalition,
    aggregator: Hospital,
    rule: Aggregator,
    contributions: Sequence[tuple[Contribution, TrainingFacts]],
    head_id: int,
) -> Proposal:
    """The round's aggregator screens the contributions, combines those it keeps and submits the result, listing
    the ones it left out and why (a Byzantine one may cheat)."""
    backend = _backend(co)
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    parent = backend.open(aggregator, parent_hash)
    kept: list[tuple[Contribution, TrainingFacts, StateDict]] = []
    excluded: list[Exclusion] = []
    for c, facts in contributions:
        state, problem = screen(co, aggregator, parent, c)
        if problem is None and state is not None:
            kept.append((c, facts, state))
        else:
            excluded.append(Exclusion(c, problem or "cannot be opened"))
            log.warning("%s leaves out %s's contribution %s: %s", aggregator.name, c.member, c.model_hash, problem)
    if not kept:
        raise AggregationError(f"every contribution to the round on model {head_id} was left out: {excluded[0].reason}")
    weights = aggregate_of(co, rule, [(state, c.samples) for c, _, state in kept])
    if aggregator.byzantine:  # it submits its own poisoned model claiming it is the aggregate
        weights = backend.train(aggregator, parent, seed=co.client.model_count()).model
    model_hash = backend.store_model(weights)
    metadata = CandidateMetadata(
        variant=backend.variant.name,
        mode="fedavg",
        parent=parent_hash,
        model=backend.describe(),
        training=aggregate_facts([f for _, f, _ in kept]),
        tclearn_version=__version__,
        aggregation=Aggregation(rule.value, tuple(c for c, _, _ in kept), tuple(excluded)),
        update_norm=update_norm(parent, weights),
    )
    return submit(co, aggregator, head_id, model_hash, metadata)


def signature_problem(
    contributions: Sequence[Contribution], *, chain_id: int, contract: str, parent_id: int, active: set[str]
) -> str | None:
    """None if every contribution is signed by the active member it names, each member once; else the problem."""
    if not contributions:
        return "the aggregate lists no contributions"
    seen: set[str] = set()
    for c in contributions:
        text = message(chain_id, contract, parent_id, c.model_hash)
        try:
            signer = Account.recover_message(encode_defunct(text=text), signature=c.signature)
        except Exception:  # eth-account raises several types for malformed signatures (as vault/signing.py)
            return f"contribution {c.model_hash} carries an unreadable signature"
        if signer != c.member:
            return f"contribution {c.model_hash} is signed by {signer}, not by the member it names ({c.member})"
        if signer not in active:
            return f"contribution {c.model_hash} comes from {signer}, who is not an active member"
        if signer in seen:
            return f"{signer} contributes twice"
        seen.add(signer)
    return None


def verify_aggregate(
    co: Coalition, validator: Hospital, aggregation: Aggregation, parent_id: int, weights: StateDict
) -> str | None:
    """None if `weights` is exactly the declared aggregate of validly signed contributions, each within the
    coalition's update bound, and every contribution left out was rightly left out; else the problem."""
    try:
        rule = Aggregator(aggregation.rule)
    except ValueError:
        return f"the aggregate declares an unknown rule {aggregation.rule!r}"
    active = {m.address for m in co.client.members() if m.active}
    problem = signature_problem(
        [*aggregation.contributions, *(e.contribution for e in aggregation.excluded)],
        chain_id=co.client.chain.chain_id,
        contract=co.client.address,
        parent_id=parent_id,
        active=active,
    )
    if problem is not None:
        return problem
    try:
        parent = _backend(co).open(validator, co.client.get_model(parent_id, with_uri=False).model_hash.hex())
    except TclearnError as exc:
        return f"the aggregate's parent cannot be opened: {exc}"
    states = []
    for c in aggregation.contributions:
        state, problem = screen(co, validator, parent, c)
        if problem is not None or state is None:
            return f"contribution {c.model_hash} of {c.member} should have been left out: {problem}"
        states.append((state, c.samples))
    for e in aggregation.excluded:
        if screen(co, validator, parent, e.contribution)[1] is None:
            c = e.contribution
            return f"contribution {c.model_hash} of {c.member} was left out without cause (declared: {e.reason})"
    try:
        expected = aggregate_of(co, rule, states)
    except TclearnError as exc:
        return f"the listed contributions cannot be aggregated: {exc}"
    if expected.keys() != weights.keys() or any(not torch.equal(expected[k], weights[k]) for k in expected):
        return f"the candidate is not the {rule.value} of its listed contributions"
    return None
