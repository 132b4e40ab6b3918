"""FedAvg mode: one synchronous round per candidate, with verifiable aggregation and no extra contract calls.

Every member trains from the same head and stores its *contribution* in the vault (sealed for all members
in variant B), signed with its Ethereum key over (chain id, contract, parent id, contribution hash). The
round's aggregator combines them (FedAvg, coordinate-wise median or trimmed mean) and submits the result;
the candidate's metadata lists every contribution with its signature. Validators recompute the aggregate
from the listed contributions and reject any mismatch before they even score it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from eth_account import Account
from eth_account.messages import encode_defunct

from tclearn import __version__
from tclearn.coalition.backend import StateDict, TensorBackend, tensors
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.member import Proposal, submit
from tclearn.errors import TclearnError
from tclearn.learning import aggregate
from tclearn.learning.choices import Aggregator
from tclearn.records import Aggregation, CandidateMetadata, Contribution, TrainingFacts

DOMAIN = "tclearn-contribution-v1"


def message(chain_id: int, contract: str, parent_id: int, model_hash: str) -> str:
    """The text a member signs for its contribution: binds it to one coalition, one parent, one blob."""
    return f"{DOMAIN}\n{chain_id}\n{contract.lower()}\n{parent_id}\n{model_hash}"


def _backend(co: Coalition) -> TensorBackend:
    return tensors(co.backend, "FedAvg mode")


def contribute(co: Coalition, member: Hospital, head_id: int) -> tuple[Contribution, TrainingFacts]:
    """`member` trains from the head, stores its contribution and signs it."""
    backend = _backend(co)
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    seed = co.client.model_count()  # a round on the same head again (its aggregate rejected) trains anew
    trained = backend.train(member, backend.open(member, parent_hash), seed=seed, ref=parent_hash)
    model_hash = backend.store_model(trained.model)
    text = message(co.client.chain.chain_id, co.client.address, head_id, model_hash)
    signature = member.account.sign_message(encode_defunct(text=text)).signature.hex()
    contribution = Contribution(
        member.address,
        model_hash,
        trained.facts.samples,
        trained.facts.batch_size,
        signature if signature.startswith("0x") else "0x" + signature,
    )
    return contribution, trained.facts


def combine(rule: Aggregator, states: Sequence[tuple[StateDict, int]]) -> StateDict:
    if rule is Aggregator.FEDAVG:
        return aggregate.fedavg(states)
    if rule is Aggregator.MEDIAN:
        return aggregate.median([s for s, _ in states])
    return aggregate.trimmed_mean([s for s, _ in states], trim=0.25)


def aggregate_of(co: Coalition, reader: Hospital, rule: Aggregator, contributions: Sequence[Contribution]) -> StateDict:
    backend = _backend(co)
    states = [(backend.open(reader, c.model_hash), c.samples) for c in contributions]
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
    """The round's aggregator combines the contributions and submits the result (a Byzantine one may cheat)."""
    backend = _backend(co)
    shares = [c for c, _ in contributions]
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    weights = aggregate_of(co, aggregator, rule, shares)
    if aggregator.byzantine:  # it submits its own poisoned model claiming it is the aggregate
        weights = backend.train(aggregator, backend.open(aggregator, parent_hash), seed=head_id).model
    model_hash = backend.store_model(weights)
    metadata = CandidateMetadata(
        variant=backend.variant.name,
        mode="fedavg",
        parent=parent_hash,
        model=backend.describe(),
        training=aggregate_facts([f for _, f in contributions]),
        tclearn_version=__version__,
        aggregation=Aggregation(rule.value, tuple(shares)),
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
    """None if `weights` is exactly the declared aggregate of validly signed contributions; else the problem."""
    try:
        rule = Aggregator(aggregation.rule)
    except ValueError:
        return f"the aggregate declares an unknown rule {aggregation.rule!r}"
    active = {m.address for m in co.client.members() if m.active}
    problem = signature_problem(
        aggregation.contributions,
        chain_id=co.client.chain.chain_id,
        contract=co.client.address,
        parent_id=parent_id,
        active=active,
    )
    if problem is not None:
        return problem
    try:
        expected = aggregate_of(co, validator, rule, aggregation.contributions)
    except TclearnError as exc:
        return f"the listed contributions cannot be aggregated: {exc}"
    if expected.keys() != weights.keys() or any(not torch.equal(expected[k], weights[k]) for k in expected):
        return f"the candidate is not the {rule.value} of its listed contributions"
    return None
