"""Coordinated Byzantine members of a simulated FedAvg round: an omniscient attacker that sees the round's
honest contributions. Passed to `tclearn.coalition.rounds.run_fedavg_round` by the simulations only; the
duties themselves never collude."""

from __future__ import annotations

from collections.abc import Sequence

from tclearn.coalition.backend import tensors
from tclearn.coalition.context import Coalition
from tclearn.coalition.fedavg import signed
from tclearn.learning.attacks import Attack
from tclearn.learning.collusion import little_is_enough, z_of
from tclearn.records import Contribution, TrainingFacts

Shares = list[tuple[Contribution, TrainingFacts]]


def little_is_enough_round(co: Coalition, head_id: int, shares: Sequence[tuple[Contribution, TrainingFacts]]) -> Shares:
    """The round's contributions with every `little_is_enough` member's replaced by the same coordinated model
    (mean - z * std of the honest ones), stored and signed by each colluder; unchanged when none colludes."""
    colluders = {h.address: h for h in co.hospitals if h.attack is Attack.LITTLE_IS_ENOUGH}
    honest = [c for c, _ in shares if c.member not in colluders]
    if not any(c.member in colluders for c, _ in shares) or not honest:
        return list(shares)
    backend = tensors(co.backend, "a coordinated attack")
    reader = colluders[next(c.member for c, _ in shares if c.member in colluders)]
    states = [backend.open(reader, c.model_hash) for c in honest]
    forged = little_is_enough(states, z_of(len(shares), len(shares) - len(honest)))
    parent = backend.open(reader, co.client.get_model(head_id, with_uri=False).model_hash.hex())
    return [
        (signed(co, colluders[c.member], head_id, parent, forged, facts), facts)
        if c.member in colluders
        else (c, facts)
        for c, facts in shares
    ]
