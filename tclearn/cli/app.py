"""The `tclearn` command: wires each command group; user mistakes print one line, never a traceback."""

from __future__ import annotations

import sys

import typer

from tclearn import __version__
from tclearn.cli import (
    account,
    active,
    audit,
    auditor,
    chain,
    coalition,
    data,
    db,
    demo,
    exports,
    gov,
    ledger,
    member,
    node,
    predict,
    supervisor,
    train,
    vault,
    watermark,
)
from tclearn.cli.common import report
from tclearn.errors import TclearnError

app = typer.Typer(
    help="tclearn: trusted-coalition learning on an Ethereum ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tclearn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", help="Print tclearn's version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """tclearn: trusted-coalition learning on an Ethereum ledger."""


app.add_typer(chain.app, name="chain")
app.add_typer(active.app, name="active")
app.add_typer(account.app, name="account")
app.add_typer(coalition.app, name="coalition")
app.add_typer(member.app, name="member")
app.add_typer(gov.app, name="gov")
app.add_typer(ledger.app, name="ledger")
app.add_typer(vault.app, name="vault")
app.add_typer(node.app, name="node")
app.add_typer(supervisor.app, name="supervisor")
app.add_typer(audit.app, name="audit")
app.add_typer(auditor.app, name="auditor")
app.add_typer(data.app, name="data")
app.add_typer(db.app, name="db")
app.add_typer(watermark.app, name="watermark")
app.command("train")(train.train)
app.command("evaluate")(train.evaluate)
app.command("predict")(predict.predict)
app.command("demo")(demo.demo)
app.command("export")(exports.export)
app.command("trace")(exports.trace)


def main() -> None:
    """Entry point: Typer reports usage errors itself (exit 2); tclearn errors print one line (exit 1)."""
    try:
        app()
    except TclearnError as exc:
        report(exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
