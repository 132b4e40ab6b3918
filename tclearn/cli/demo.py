"""`tclearn demo`: a coalition on a chain, candidate by candidate, in a live table."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from tclearn.cli.common import console
from tclearn.coalition.simulation import CandidateRow, check_arguments, simulate
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import Chain, connect, embedded_chain
from tclearn.ledger.node import NODES, LocalNode
from tclearn.types import Variant


def _table(rows: list[CandidateRow]) -> Table:
    table = Table(title="Candidates (ledger simulation: chain real, scores simulated)")
    for col in ("id", "proposer", "general", "+/-", "score on G", "state", "gas"):
        table.add_column(col)
    for r in rows:
        style = {"committed": "green", "rejected": "red"}.get(r.state, "")
        who = r.proposer + (" [red](byzantine)[/]" if r.byzantine else "")
        table.add_row(
            str(r.id),
            who,
            r.general,
            f"{r.approvals}/{r.rejections}",
            f"{r.score_global:.3f}",
            f"[{style}]{r.state}[/]" if style else r.state,
            str(r.gas or ""),
        )
    return table


@contextlib.contextmanager
def _chain(spec: str, accounts: int) -> Iterator[Chain]:
    if spec == "embedded":
        yield embedded_chain(accounts)
    elif spec in NODES:
        with LocalNode(spec, accounts=accounts) as node:
            chain = connect(node.url)
            chain.dev_keys = dev_accounts(accounts)
            yield chain
    else:
        chain = connect(spec)
        chain.dev_keys = dev_accounts(accounts)
        yield chain


def demo(
    members: int = typer.Option(4, "--members", min=2, max=50, help="Hospitals (all of them validators)."),
    byzantine: int = typer.Option(1, "--byzantine", min=0, help="How many of them submit poisoned increments."),
    rounds: int = typer.Option(6, "--rounds", min=1, max=1000, help="Candidates submitted, hospitals in turn."),
    variant: str = typer.Option("B", "--variant", help="Security variant recorded on chain: A, B or C."),
    chain_spec: str = typer.Option(
        "embedded", "--chain", help="embedded, anvil, ganache or a JSON-RPC URL (dev keys)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write summary.json into this folder."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated scores."),
    as_json: bool = typer.Option(False, "--json", help="Print only the summary JSON."),
) -> None:
    """Run a coalition on a chain: draws, integrity opening, 2/3 votes and commits, with gas per step."""
    parsed = Variant.parse(variant)
    check_arguments(members, byzantine)
    with _chain(chain_spec, members + 1) as chain:
        if as_json:
            result = simulate(chain, members=members, byzantine=byzantine, rounds=rounds, seed=seed, variant=parsed)
        else:
            with Live(_table([]), console=console, refresh_per_second=8) as live:
                result = simulate(
                    chain,
                    members=members,
                    byzantine=byzantine,
                    rounds=rounds,
                    seed=seed,
                    variant=parsed,
                    on_update=lambda rows: live.update(_table(rows)),
                )
            console.print()
    summary = result.to_json()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"head = model {summary['head']}; committed {summary['committed']}, rejected {summary['rejected']}; "
        f"poisoned submitted {summary['poisoned_submitted']}, committed {summary['poisoned_committed']}; "
        f"gas: submit {summary['gas']['submit']}, vote {summary['gas']['vote']}, "
        f"committed round {summary['gas']['per_committed_round']}; {summary['seconds']} s"
    )
    if out is not None:
        console.print(f"summary -> {out / 'summary.json'}")
