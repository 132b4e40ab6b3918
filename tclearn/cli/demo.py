"""`tclearn demo`: hospitals train one model together on a chain, candidate by candidate, in a live table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.live import Live
from rich.table import Table

from tclearn.cli.common import console
from tclearn.learning.choices import DEFAULT_AGGREGATOR, Aggregator, Attack
from tclearn.learning.defaults import COALITION_TRAINING, DEMO_ROUNDS, DEMO_TRAIN, DP_DEMO, ENCRYPTED_DEMO_ROUNDS
from tclearn.types import Variant

if TYPE_CHECKING:
    from tclearn.coalition.rounds import CandidateRow
    from tclearn.simulation.demo import DemoResult

STATE_STYLE = {"committed": "green", "rejected": "red", "expired": "yellow", "stale": "yellow"}


def _table(rows: list[CandidateRow], metric: str) -> Table:
    table = Table(title="Candidates")
    for col in ("id", "proposer", "general", "+/-", f"{metric} on G", "state", "gas"):
        table.add_column(col)
    for r in rows:
        style = STATE_STYLE.get(r.state, "")
        who = r.proposer + (" [red](byzantine)[/]" if r.byzantine else "")
        score = "-" if r.score_global is None else f"{r.score_global:.3f}"
        state = f"[{style}]{r.state}[/]" if style else r.state
        table.add_row(
            str(r.id), who, r.general, f"{r.approvals}/{r.rejections}", score, state, str(sum(r.gas.values()))
        )
    return table


def _comparison(result: DemoResult) -> Table:
    """Each model on G and on every hospital's L, all trained with the same number of optimisation steps."""
    rows = result.score_table
    sets = list(next(iter(rows.values())))
    table = Table(title=f"{result.summary['metric']} on G and on each hospital's local test set L (same budget)")
    table.add_column("model")
    for name in sets:
        table.add_column(name if name == "G" else f"L of {name}", justify="right")
    labels = {"coalition": "[bold]coalition head[/]", "centralized": "centralised (pooled data)"}
    order = [n for n in rows if n not in labels] + list(labels)
    for name in order:
        cells = [f"{rows[name][s]:.3f}" for s in sets]
        table.add_row(labels.get(name, f"{name} alone"), *cells)
    return table


def _requests(log: list[dict[str, Any]]) -> str:
    """Variant C: the supervisor's log summed up, e.g. `score 34, refresh 25, decrypt 1`."""
    counts = Counter(str(entry["action"]) for entry in log)
    accounts = len({entry["account"] for entry in log})
    return ", ".join(f"{action} {n}" for action, n in counts.most_common()) + f", from {accounts} accounts"


def _by_attack(counts: dict[str, dict[str, int]]) -> str:
    """One clause per attack: "drift 5 submitted: 2 refused by the general, 3 rejected, 0 committed"."""
    return "; ".join(
        f"{attack} {c['submitted']} submitted: {c['refused']} refused by the general, {c['rejected']} rejected, "
        f"{c['committed']} committed"
        for attack, c in counts.items()
    )


def _write_outputs(out: Path, result: DemoResult) -> None:
    from tclearn.audit.report import write_report
    from tclearn.config import save_deployment
    from tclearn.ledger.deployment import deployment_of

    (out / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    if result.supervisor_log:
        (out / "supervisor-log.json").write_text(json.dumps(result.supervisor_log, indent=2) + "\n")
    write_report(
        out,
        result.history,
        result.summary,
        audit=result.audit,
        score_table=result.score_table,
        evidence=result.evidence,
    )
    client = result.client
    first = client.events()[0]
    save_deployment(
        deployment_of(client, first.block_number, first.tx_hash, str(result.summary["variant"])),
        out / "deployment.json",
    )


def demo(
    members: int = typer.Option(4, "--members", help="Hospitals (all of them validators)."),
    byzantine: int = typer.Option(1, "--byzantine", help="How many of them are Byzantine."),
    attack: list[Attack] = typer.Option(
        [Attack.SIGN_FLIP.value],
        "--attack",
        help="What the Byzantine members do; repeat it for several (the Byzantine members take them in turn).",
    ),
    variant: str = typer.Option(
        "B", "--variant", help="A (public model), B (envelope-encrypted model) or C (CKKS model, supervisor)."
    ),
    mode: str = typer.Option(
        "incremental", "--mode", help="incremental (each increment is a candidate) or fedavg (one aggregate a round)."
    ),
    aggregator: Aggregator | None = typer.Option(
        None,
        "--aggregator",
        help=f"fedavg mode: how contributions are combined \\[default: the policy's; {DEFAULT_AGGREGATOR.value}].",
        show_default=False,
    ),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="The acceptance policy to found the coalition with (a record from `tclearn coalition policy`).",
    ),
    rounds: int | None = typer.Option(
        None,
        "--rounds",
        help=f"Candidates submitted, hospitals in turn \\[default: {DEMO_ROUNDS}; variant C: {ENCRYPTED_DEMO_ROUNDS}; "
        "with --dp-epsilon: one per hospital].",
    ),
    chain_spec: str = typer.Option(
        "embedded", "--chain", help="embedded, anvil, ganache or a JSON-RPC URL (dev keys)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="A coalition folder (layout of `tclearn data synth`; C: <hospital>/{train,test}.csv, global.csv).",
    ),
    label_column: str = typer.Option("label", "--label-column", help="Variant C: the label column of the CSVs."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Network \\[default: unet; multilabel: densenet121]: unet, basic_unet, attention_unet, segresnet, "
        "densenet121, resnet18.",
        show_default=False,
    ),
    task: str = typer.Option("segmentation", "--task", help="segmentation, or multilabel (ten CT regions)."),
    dims: int = typer.Option(2, "--dims", help="Synthetic data: 2 (pictures) or 3 (CT volumes, NIfTI)."),
    dp_epsilon: float | None = typer.Option(
        None,
        "--dp-epsilon",
        help="A DP coalition: each hospital's epsilon cap (delta 1e-5) over all its increments, kept on chain; "
        "increments are DP-SGD, each spending its share.",
        show_default=False,
    ),
    watermark: bool = typer.Option(
        False,
        "--watermark",
        help="Found the coalition with a watermark (variants A and B): members train it into every increment and the "
        "general refuses a candidate that lost it.",
    ),
    cases: int | None = typer.Option(
        None,
        "--cases",
        help=f"Synthetic data: labelled training cases per hospital \\[default: {DEMO_TRAIN}; "
        f"with --dp-epsilon: {DP_DEMO.cases}].",
        show_default=False,
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Each step's batch (DP-SGD: its expected size) \\[default: {COALITION_TRAINING.batch_size}; "
        f"with --dp-epsilon: {DP_DEMO.batch_size}].",
        show_default=False,
    ),
    out: Path = typer.Option(Path("out/demo"), "--out", help="Vault, data, summary.json and deployment.json go here."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the genesis model and training."),
    as_json: bool = typer.Option(False, "--json", help="Print only summary.json."),
) -> None:
    """Run a coalition: members train, a drawn general checks and opens, validators vote, 2/3 commit."""
    from tclearn.coalition.declared import policy_file
    from tclearn.ledger.localchain import open_chain
    from tclearn.simulation.demo import DemoSettings, chosen_aggregator, run_demo

    acceptance = None if policy is None else policy_file(policy)
    private = dp_epsilon is not None
    if rounds is None:  # a DP coalition: each hospital proposes once, with its whole cap (docs/privacy.md, "Utility")
        plain_rounds = ENCRYPTED_DEMO_ROUNDS if Variant.parse(variant) is Variant.C else DEMO_ROUNDS
        rounds = members if private else plain_rounds
    if cases is None:
        cases = DP_DEMO.cases if private else DEMO_TRAIN
    if batch_size is None:
        batch_size = DP_DEMO.batch_size if private else COALITION_TRAINING.batch_size
    settings = DemoSettings(
        members=members,
        byzantine=byzantine,
        attack=tuple(attack),
        variant=variant,  # type: ignore[arg-type]
        mode=mode,
        aggregator=chosen_aggregator(aggregator, acceptance),
        acceptance=acceptance,
        rounds=rounds,
        model=model,
        task=task,  # type: ignore[arg-type]  # validated into Task by DemoSettings
        dims=dims,
        seed=seed,
        data=data,
        label_column=label_column,
        dp_epsilon=dp_epsilon,
        watermark=watermark,
        cases=cases,
        batch_size=batch_size,
    )
    metric = (
        {"segmentation": "Dice", "multilabel": "mean AUC"}.get(task, task)
        if settings.variant is not Variant.C
        else "accuracy"
    )
    with open_chain(chain_spec, settings.accounts) as chain:
        if as_json:
            result = run_demo(settings, chain, out, chain_label=chain_spec)
        else:
            with Live(_table([], metric), console=console, refresh_per_second=8) as live:
                result = run_demo(
                    settings,
                    chain,
                    out,
                    on_update=lambda rows: live.update(_table(rows, metric)),
                    chain_label=chain_spec,
                )
            console.print()
        _write_outputs(out, result)
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2))
        return
    s = result.summary
    console.print(_comparison(result))
    a = result.audit
    audit = (
        f"[green]{a.blobs_verified} blobs match the chain, every commit has its quorum[/]"
        if a.ok
        else "[red]FAILED[/]: " + "; ".join(str(f) for f in a.errors)
    )
    console.print(
        f"head = model {result.head}; committed {s['committed']}, rejected {s['rejected']}; poisoned submitted "
        f"{s['poisoned_submitted']}, committed {s['poisoned_committed']}; honest rejected {s['honest_rejected']}\n"
        f"by attack: {_by_attack(s['attacks'])}\n"
        f"gas: submit {s['gas']['submit']}, open {s['gas']['open']}, vote {s['gas']['vote']}, committed round "
        f"{s['gas']['per_committed_round']}\naudit: {audit}\n"
        f"time: {s['seconds']} s ({', '.join(f'{k} {v:.1f} s' for k, v in result.seconds_by_phase.items())})\n"
        f"outputs in {out}: report.html (+ PNG plots), summary.json, deployment.json, vault/, data/"
    )
    if result.supervisor_log:
        console.print(f"supervisor requests: {_requests(result.supervisor_log)} (supervisor-log.json)")
