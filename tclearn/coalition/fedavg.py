"""FedAvg mode: one synchronous round per candidate, with verifiable aggregation and no extra contract calls.

Every member trains from the same head and stores its *contribution* in the vault (sealed for all members
in variant B), signed with its Ethereum key over (chain id, contract, parent id, contribution hash). The
round's aggregator combines them (FedAvg, coordinate-wise median or trimmed mean) and submits the result;
the candidate's metadata lists every contribution with its signature. Validators recompute the aggregate
from the listed contributions and reject any mismatch before they even score it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from eth_account import Account
from eth_account.messages import encode_defunct

from tclearn import __version__
from tclearn.coalition.blobs import load_model, put_json, store_model
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.member import Proposal, train_weights, vault_uri
from tclearn.errors import ConfigError, TclearnError
from tclearn.learning import aggregate
from tclearn.learning.models import arch_hash

StateDict = dict[str, torch.Tensor]
DOMAIN = "tclearn-contribution-v1"


class Aggregator(enum.StrEnum):
    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"


@dataclass(frozen=True)
class Contribution:
    member: str
    model_hash: str
    samples: int
    batch_size: int
    signature: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contribution:
        try:
            return cls(
                str(data["member"]),
                str(data["model_hash"]),
                int(data["samples"]),
                int(data["batch_size"]),
                str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed contribution entry {data!r}: {exc}") from None


def message(chain_id: int, contract: str, parent_id: int, model_hash: str) -> str:
    """The text a member signs for its contribution: binds it to one coalition, one parent, one blob."""
    return f"{DOMAIN}\n{chain_id}\n{contract.lower()}\n{parent_id}\n{model_hash}"


def contribute(co: Coalition, member: Hospital, head_id: int) -> Contribution:
    trained = train_weights(co, member, head_id)
    model_hash = store_model(co, trained.weights)
    text = message(co.client.chain.chain_id, co.client.address, head_id, model_hash)
    signature = member.account.sign_message(encode_defunct(text=text)).signature.hex()
    return Contribution(
        member.address,
        model_hash,
        trained.facts.samples,
        trained.facts.batch_size,
        signature if signature.startswith("0x") else "0x" + signature,
    )


def combine(rule: Aggregator, states: Sequence[tuple[StateDict, int]]) -> StateDict:
    if rule is Aggregator.FEDAVG:
        return aggregate.fedavg(states)
    if rule is Aggregator.MEDIAN:
        return aggregate.median([s for s, _ in states])
    return aggregate.trimmed_mean([s for s, _ in states], trim=0.25)


def aggregate_of(co: Coalition, reader: Hospital, rule: Aggregator, contributions: Sequence[Contribution]) -> StateDict:
    states = [(load_model(co, reader, c.model_hash), c.samples) for c in contributions]
    with co.clock("training"):
        return combine(rule, states)


def propose_aggregate(
    co: Coalition, aggregator: Hospital, rule: Aggregator, contributions: Sequence[Contribution], head_id: int
) -> Proposal:
    """The round's aggregator combines the contributions and submits the result (a Byzantine one may cheat)."""
    weights = aggregate_of(co, aggregator, rule, contributions)
    if aggregator.byzantine:  # it submits its own poisoned model claiming it is the aggregate
        weights = train_weights(co, aggregator, head_id).weights
    model_hash = store_model(co, weights)
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    metadata = {
        "mode": "fedavg",
        "aggregator": rule.value,
        "parent": parent_hash,
        "variant": co.variant.name,
        "model": co.model.to_dict(),
        "arch_hash": arch_hash(co.model),
        "tclearn_version": __version__,
        "training": {
            "batch_size": min(c.batch_size for c in contributions),
            "samples": sum(c.samples for c in contributions),
        },
        "contributions": [c.to_json() for c in contributions],
    }
    metadata_hash = put_json(co, metadata)
    with co.clock("ledger"):
        submission = co.client.submit(
            aggregator.account, head_id, bytes.fromhex(model_hash), vault_uri(model_hash), bytes.fromhex(metadata_hash)
        )
    return Proposal(submission, model_hash, metadata_hash, 0)


def verify_aggregate(
    co: Coalition, validator: Hospital, metadata: dict[str, Any], parent_id: int, weights: StateDict
) -> str | None:
    """None if `weights` is exactly the declared aggregate of validly signed contributions; else the problem."""
    try:
        rule = Aggregator(str(metadata.get("aggregator")))
        contributions = [Contribution.from_json(c) for c in metadata.get("contributions", [])]
    except (ValueError, ConfigError) as exc:
        return f"the aggregate's metadata is malformed: {exc}"
    if not contributions:
        return "the aggregate lists no contributions"
    members = {m.address: m for m in co.client.members() if m.active}
    seen: set[str] = set()
    for c in contributions:
        text = message(co.client.chain.chain_id, co.client.address, parent_id, c.model_hash)
        try:
            signer = Account.recover_message(encode_defunct(text=text), signature=c.signature)
        except (ValueError, TypeError):
            return f"contribution {c.model_hash} carries an unreadable signature"
        if signer != c.member:
            return f"contribution {c.model_hash} is signed by {signer}, not by the member it names ({c.member})"
        if signer not in members:
            return f"contribution {c.model_hash} comes from {signer}, who is not an active member"
        if signer in seen:
            return f"{signer} contributes twice"
        seen.add(signer)
    try:
        expected = aggregate_of(co, validator, rule, contributions)
    except TclearnError as exc:
        return f"the listed contributions cannot be aggregated: {exc}"
    if expected.keys() != weights.keys() or any(not torch.equal(expected[k], weights[k]) for k in expected):
        return f"the candidate is not the {rule.value} of its listed contributions"
    return None
