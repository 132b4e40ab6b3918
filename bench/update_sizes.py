"""How far honest work moves a model, and how far the crude attacks do: the measurement behind
`AcceptancePolicy.max_update`.

Runs the demo's coalition with every member honest (variant B, embedded chain, the demo's defaults otherwise)
for `--rounds` rounds in `--mode`, then measures every candidate's update size against its parent
(`tclearn.learning.update.update_norm`) — in FedAvg mode every contribution's and every aggregate's — and what
`sign_flip`, `random_weights` and `gaussian_noise` (`tclearn.learning.attacks`) would have submitted instead
of each honest update. Prints JSON: min / median / max per kind, and the honest updates beyond each bound.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from tclearn.coalition.context import Coalition
from tclearn.coalition.rounds import run_fedavg_round, run_round
from tclearn.learning.attacks import Attack, attack_weights
from tclearn.learning.update import update_norm
from tclearn.ledger.chain import embedded_chain
from tclearn.records import CandidateMetadata
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant

ATTACKS = (Attack.SIGN_FLIP, Attack.RANDOM_WEIGHTS, Attack.GAUSSIAN_NOISE)
BOUNDS = (0.1, 0.2, 0.3, 0.5, 1.0)


def measured(co: Coalition) -> dict[str, list[float]]:
    """Every candidate's (and contribution's) update size, and each attack's on the same honest updates."""
    reader = co.hospitals[0]
    sizes: dict[str, list[float]] = {"honest": [], "aggregate": [], **{a.value: [] for a in ATTACKS}}
    for model_id in range(1, co.client.model_count()):
        record = co.client.get_model(model_id, with_uri=False)
        parent_hash = co.client.get_model(record.parent_id, with_uri=False).model_hash.hex()
        parent = co.backend.open(reader, parent_hash)
        metadata = CandidateMetadata.parse(co.store.get(record.metadata_hash.hex()))
        children = [co.backend.open(reader, record.model_hash.hex())]
        if metadata.aggregation is not None:
            sizes["aggregate"].append(update_norm(parent, children[0]))
            children = [co.backend.open(reader, c.model_hash) for c in metadata.aggregation.contributions]
        for child in children:
            sizes["honest"].append(update_norm(parent, child))
            for attack in ATTACKS:
                sizes[attack.value].append(update_norm(parent, attack_weights(attack, parent, child, seed=model_id)))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="incremental", choices=("incremental", "fedavg"))
    parser.add_argument("--rounds", type=int, default=DemoSettings.rounds)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = DemoSettings(
        members=4,
        byzantine=0,
        attack=Attack.NONE,
        variant=Variant.B,
        mode=args.mode,
        rounds=args.rounds,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as out:
        co, _ = setup(settings, embedded_chain(settings.accounts + 1), Path(out))
        for r in range(settings.rounds):
            turn = co.hospitals[r % settings.members]
            if settings.mode == "fedavg":
                run_fedavg_round(co, turn)
            else:
                run_round(co, turn)
        sizes = measured(co)
    honest = sizes["honest"]
    print(
        json.dumps(
            {
                "benchmark": "update_sizes",
                "mode": args.mode,
                "rounds": args.rounds,
                "seed": args.seed,
                "sizes": {
                    kind: {"n": len(v), "min": min(v), "median": statistics.median(v), "max": max(v)}
                    for kind, v in sizes.items()
                    if v
                },
                "honest_beyond": {str(b): sum(s > b for s in honest) for b in BOUNDS},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
