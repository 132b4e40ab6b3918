"""What several CLI commands share: the console, signers and opening a deployment."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import typer
from eth_account.signers.local import LocalAccount
from rich.console import Console

from tclearn.errors import TclearnError
from tclearn.ledger.accounts import choose_signer
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import open_deployment

console = Console()

KeystoreOpt = typer.Option(None, "--keystore", help="Encrypted keystore of the signing account.")
DevAccountOpt = typer.Option(
    None, "--dev-account", help="Sign with funded dev account N (local Anvil/Ganache chains only)."
)
DeploymentOpt = typer.Option(Path("deployment.json"), "--deployment", "-d", help="Deployment file.")
UrlOpt = typer.Option(None, "--chain", help="JSON-RPC URL (default: the URL in the deployment file).")


def report(exc: TclearnError) -> None:
    """A user's mistake as one unwrapped line on stderr, whatever the terminal width."""
    typer.echo(f"error: {exc}", err=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: a `TclearnError` becomes one line on stderr and exit status 1, never a traceback."""
    try:
        yield
    except TclearnError as exc:
        report(exc)
        raise typer.Exit(1) from None


def export_settings(prefix: str, values: Mapping[str, object | None]) -> None:
    """Hands a serve command's options to its service: `values` as `{prefix}{KEY}` environment variables, which
    the service's pydantic settings read in the uvicorn worker; options left unset (None) are not exported."""
    os.environ.update({f"{prefix}{key}": str(value) for key, value in values.items() if value is not None})


def signer(chain: Chain, keystore: Path | None, dev_account: int | None) -> LocalAccount:
    """The account that signs: --keystore (password from env or prompt) or --dev-account N."""
    return choose_signer(chain.chain_id, chain.embedded, keystore, dev_account)


def open_as(
    deployment: Path, url: str | None, keystore: Path | None, dev_account: int | None
) -> tuple[LedgerClient, LocalAccount]:
    """The deployment's client and the account that will sign through it."""
    _, client = open_deployment(deployment, url)
    return client, signer(client.chain, keystore, dev_account)
