"""Attacks against the coalition and the validation that stops them: one row per attack, as JSON.

For each mode (incremental, FedAvg), coalition size n (4 and 7, floor((n-1)/3) of them Byzantine), attack and
seed, the demo's coalition (synthetic 2-D segmentation, variant A, embedded chain, no baselines) runs once with
its attackers and once without any (the same seed: the same data, genesis and turns). A row gives, per attack:
Byzantine candidates submitted and committed, honest candidates rejected, the final head's Dice on G and its
ratio to the same run without attackers, and for backdoor attacks the success rate of the trigger on the final
head with the main-task Dice beside it.

Targets (issue 15): 0 poisoned commits for every degradation attack (crude, drift, targeted, inadequate data;
in FedAvg mode, where the aggregate of every contribution is the candidate, the final head's ratio judges the
collusion attacks); final head >= 0.97x the head without attackers; backdoor success <= 10 %; honest candidates
rejected <= 1 in 10.

    PYTHONPATH=. python bench/attacks.py                       # everything: 2 modes x 2 sizes x 3 seeds
    PYTHONPATH=. python bench/attacks.py --modes incremental --members 4 --seeds 1 --attacks drift backdoor
    PYTHONPATH=. python bench/attacks.py --combine inc.json fedavg.json   # one table from runs done apart
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tclearn.coalition.backend import tensors
from tclearn.learning.backdoor import backdoor_success
from tclearn.learning.choices import FEDAVG_ONLY, KIND_OF_ATTACK, Attack, AttackKind
from tclearn.ledger.localchain import open_chain
from tclearn.records import VoteEvidence
from tclearn.simulation.demo import DemoResult, DemoSettings, run_demo
from tclearn.types import Variant

ATTACKS = tuple(a for a in Attack if a not in (Attack.NONE, Attack.LAZY))
FEDAVG_ROUNDS = 6  # every member trains in every FedAvg round


def settings_for(mode: str, members: int, attack: Attack, seed: int, rounds: int | None) -> DemoSettings:
    byzantine = 0 if attack is Attack.NONE else (members - 1) // 3
    return DemoSettings(
        members=members,
        byzantine=byzantine,
        attack=attack,
        variant=Variant.A,
        mode=mode,
        rounds=rounds or (FEDAVG_ROUNDS if mode == "fedavg" else DemoSettings.rounds),
        seed=seed,
        baselines=False,
    )


def backdoor_of(result: DemoResult) -> dict[str, float]:
    """The trigger's success on the final head, measured on G (with the main-task Dice beside it)."""
    co = result.coalition
    backend = tensors(co.backend, "the backdoor benchmark")
    head_hash = co.client.get_model(result.head, with_uri=False).model_hash.hex()
    model = backend.network(backend.open(co.hospitals[0], head_hash))
    return {k: round(v, 4) for k, v in backdoor_success(model, co.global_test, roi_size=backend.training.patch).items()}


def new_checks_only(result: DemoResult) -> int:
    """Honest candidates rejected by votes none of which the G and L tolerances against the head alone (the rule
    before drift and strata) would have cast: what the new checks cost honest work."""
    honest = [c["id"] for c in result.summary["candidates"] if c["attack"] == "none" and c["state"] == "rejected"]
    count = 0
    for model_id in honest:
        votes = [e for e in result.evidence.get(model_id, {}).values() if not e.approve]
        if votes and all(old_rule_passes(e) for e in votes):
            count += 1
    return count


def old_rule_passes(e: VoteEvidence) -> bool:
    if e.candidate_global is None or e.candidate_local is None:
        return False
    return (
        e.candidate_global >= e.head_global - e.tolerance_global
        and e.candidate_local >= e.head_local - e.tolerance_local
    )


def one_run(settings: DemoSettings, chain: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out, open_chain(chain, settings.accounts) as node:
        result = run_demo(settings, node, Path(out))
        s = result.summary
        attack = settings.attacks[0]
        honest = s["attacks"].get("none", {})
        row: dict[str, Any] = {
            "attack": attack.value,
            "mode": settings.mode,
            "members": settings.members,
            "byzantine": settings.byzantine,
            "seed": settings.seed,
            "submitted": s["poisoned_submitted"],
            "committed": s["poisoned_committed"],
            "refused_by_general": s["attacks"].get(attack.value, {}).get("refused", 0),
            "honest_submitted": honest.get("submitted", 0),
            "honest_rejected": s["honest_rejected"],
            "head_global": s["scores"]["coalition"],
            "seconds": s["seconds"],
        }
        row["honest_rejected_by_new_checks_only"] = new_checks_only(result)
        if settings.mode == "fedavg":  # what the aggregates took in and left out
            committed = [c for c in s["candidates"] if c["state"] == "committed"]
            row["byzantine_contributions_committed"] = sum(c["byzantine_kept"] for c in committed)
            row["contributions_excluded"] = sum(c["excluded"] for c in s["candidates"])
        if KIND_OF_ATTACK[attack] is AttackKind.BACKDOOR or attack is Attack.NONE:
            row["backdoor"] = backdoor_of(result)
    return row


def table(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, n, attack) over the seeds, each attacked run against its clean twin."""
    clean = {(r["mode"], r["members"], r["seed"]): r["head_global"] for r in runs if r["attack"] == "none"}
    # The same run with the attackers absent: every sign-flipped candidate or contribution is refused by the update
    # bound, so the Byzantine members add nothing (the clean run has their honest work besides).
    absent = {(r["mode"], r["members"], r["seed"]): r["head_global"] for r in runs if r["attack"] == "sign_flip"}
    rows = []
    keys = sorted({(r["mode"], r["members"], r["attack"]) for r in runs if r["attack"] != "none"})
    for mode, members, attack in keys:
        group = [r for r in runs if (r["mode"], r["members"], r["attack"]) == (mode, members, attack)]
        row: dict[str, Any] = {
            "mode": mode,
            "members": members,
            "byzantine": group[0]["byzantine"],
            "attack": attack,
            "kind": KIND_OF_ATTACK[Attack(attack)].value,
            "seeds": len(group),
            "submitted": sum(r["submitted"] for r in group),
            "committed": sum(r["committed"] for r in group),
            "refused_by_general": sum(r["refused_by_general"] for r in group),
            "head_global": round(statistics.mean(r["head_global"] for r in group), 4),
            "worst_ratio_to_clean": worst_ratio(group, clean),
            "worst_ratio_to_absent": worst_ratio(group, absent),
            "honest_rejected": sum(r["honest_rejected"] for r in group),
            "honest_submitted": sum(r["honest_submitted"] for r in group),
            "honest_rejected_by_new_checks_only": sum(r["honest_rejected_by_new_checks_only"] for r in group),
        }
        if mode == "fedavg":
            row["byzantine_contributions_committed"] = sum(r["byzantine_contributions_committed"] for r in group)
            row["contributions_excluded"] = sum(r["contributions_excluded"] for r in group)
        if all("backdoor" in r for r in group):
            row["worst_backdoor_success"] = max(r["backdoor"]["success"] for r in group)
            row["main_dice"] = round(statistics.mean(r["backdoor"]["dice"] for r in group), 4)
        rows.append(row)
    return rows


def worst_ratio(group: Sequence[dict[str, Any]], reference: dict[tuple[str, int, int], float]) -> float | None:
    ratios = [
        r["head_global"] / reference[key] for r in group if reference.get(key := (r["mode"], r["members"], r["seed"]))
    ]
    return round(min(ratios), 3) if ratios else None


def targets(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    degradation = [r for r in rows if r["kind"] not in (AttackKind.BACKDOOR.value, AttackKind.COLLUSION.value)]
    incremental = [r for r in degradation if r["mode"] == "incremental"]
    honest = list(runs)  # every honest candidate, in runs with and without attackers
    submitted = sum(r["honest_submitted"] for r in honest)
    ratios = [r["worst_ratio_to_clean"] for r in rows if r["worst_ratio_to_clean"] is not None]
    absent = [r["worst_ratio_to_absent"] for r in rows if r["worst_ratio_to_absent"] is not None]
    backdoors = [r["worst_backdoor_success"] for r in rows if "worst_backdoor_success" in r]
    return {
        "poisoned_commits_degradation_incremental": {"value": sum(r["committed"] for r in incremental), "target": 0},
        "worst_ratio_to_clean_head": {"value": min(ratios) if ratios else None, "target": 0.97},
        "worst_ratio_to_attacker_absent_head": min(absent) if absent else None,
        "worst_backdoor_success": {"value": max(backdoors) if backdoors else None, "target": 0.10},
        "honest_rejected_per_10": {
            "value": round(10 * sum(r["honest_rejected"] for r in honest) / max(1, submitted), 2),
            "target": 1,
        },
        "honest_rejected_by_new_checks_only_per_10": round(
            10 * sum(r["honest_rejected_by_new_checks_only"] for r in honest) / max(1, submitted), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["incremental", "fedavg"], choices=("incremental", "fedavg"))
    parser.add_argument("--members", nargs="+", type=int, default=[4, 7])
    parser.add_argument("--attacks", nargs="+", default=[a.value for a in ATTACKS], choices=[a.value for a in ATTACKS])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None, help="candidates per run [incremental 20, FedAvg 6]")
    parser.add_argument("--chain", default="embedded", help="embedded (default), anvil or ganache")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 when runs share the cores)")
    parser.add_argument("--combine", nargs="+", type=Path, help="only combine the runs of earlier outputs")
    args = parser.parse_args()
    if args.combine:
        report([run for path in args.combine for run in json.loads(path.read_text())["runs"]])
        return
    torch.set_num_threads(args.threads)
    runs = []
    for mode in args.modes:
        for members in args.members:
            for seed in range(args.seeds):
                for attack in [Attack.NONE, *map(Attack, args.attacks)]:
                    if attack in FEDAVG_ONLY and mode != "fedavg":
                        continue
                    runs.append(one_run(settings_for(mode, members, attack, seed, args.rounds), args.chain))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # progress, one run a line
    report(runs)


def report(runs: Sequence[dict[str, Any]]) -> None:
    rows = table(runs)
    print(json.dumps({"benchmark": "attacks", "table": rows, "targets": targets(rows, runs), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
