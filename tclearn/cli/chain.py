"""`tclearn chain up`: a local development chain node on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from tclearn.cli.common import console
from tclearn.ledger.localchain import NODES, LocalNode

app = typer.Typer(help="Local development chains.", no_args_is_help=True)


@app.command("up")
def up(
    node: str = typer.Option("anvil", "--node", help=f"Which node to run: {', '.join(NODES)}."),
    port: int = typer.Option(8545, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    state: Path | None = typer.Option(None, "--state", help="Keep the chain's state in FILE (anvil) / DIR (ganache)."),
    keys: Path = typer.Option(Path(".tclearn/dev-keys.json"), "--keys", help="Where to write the funded dev keys."),
    accounts: int = typer.Option(10, "--accounts", min=1, max=100, help="How many funded dev accounts."),
    block_time: int | None = typer.Option(
        None, "--block-time", min=1, help="Mine a block every N seconds (default: one block per transaction)."
    ),
) -> None:
    """Start a local node, write its funded dev keys, and run until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalNode(node, port, accounts=accounts, state=state, block_time=block_time) as running:
        running.write_dev_keys(keys)
        console.print(f"[green]{node}[/] answers at [bold]{running.url}[/]; {accounts} funded dev keys in {keys}")
        console.print("Development keys only: never use them on a real network. Ctrl-C stops the node.")
        while not stop.wait(0.5):
            if running.process is None or running.process.poll() is not None:
                raise typer.Exit(1)
    console.print(f"{node} stopped" + (f"; state kept in {state}" if state else ""))
