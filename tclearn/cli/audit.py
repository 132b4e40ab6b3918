"""`tclearn audit ...`: check a coalition run against its ledger, from the chain's logs and the vault alone.

Mounted under `tclearn audit` by `tclearn/cli/app.py`. `verify` exits 0 when the audit is clean and 1
naming each failure, so that it can gate a pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tclearn.cli.common import DeploymentOpt, UrlOpt, console, open_deployment, user_errors
from tclearn.errors import AccessDenied, AuthError, ConfigError

if TYPE_CHECKING:
    from tclearn.audit.verify import AuditReport
    from tclearn.config import Deployment
    from tclearn.ledger.history import LedgerHistory
    from tclearn.vault.store import BlobStore

app = typer.Typer(help="Audit a coalition run: lineage, quorums and every blob the chain vouches for.")

_STYLES = {"error": "red", "warning": "yellow", "info": "dim"}


@app.callback()
def _group() -> None:
    """Audit a coalition run: lineage, quorums and every blob the chain vouches for."""


def private_key_from_env(key_env: str | None) -> str | None:
    """The hex key held by the environment variable named `key_env` (None: read anonymously)."""
    if key_env is None:
        return None
    key = os.environ.get(key_env)
    if not key:
        raise ConfigError(f"--key-env {key_env}: the environment variable {key_env} is not set")
    return key


def open_vault(url: str, private_key: str | None, deployment: Deployment) -> BlobStore:
    """`http(s)://` -> the vault service (requests signed with `private_key` for the coalition of `deployment`);
    anything else an fsspec store."""
    from tclearn.vault.audience import CoalitionId
    from tclearn.vault.http import HttpStore
    from tclearn.vault.store import FsspecStore

    if url.startswith(("http://", "https://")):
        try:
            coalition = CoalitionId(deployment.chain_id, deployment.address)
            return HttpStore(url, private_key, coalition=coalition)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the auditor's private key is not a valid Ethereum key: {exc}") from None
    return FsspecStore(check_vault_url(url))


def check_vault_url(url: str) -> str:
    """`url` if it names a vault (a service or an fsspec URL); `ConfigError` before anything is opened otherwise."""
    if "://" not in url:
        raise ConfigError(f"--vault {url!r}: expected a URL such as file:///srv/vault, memory://x or https://host")
    return url


def _table(report: AuditReport) -> Table:
    table = Table(title=f"audit: {'OK' if report.ok else 'FAILED'}", show_lines=False)
    for column in ("severity", "model", "finding"):
        table.add_column(column)
    for f in report.findings:
        table.add_row(f"[{_STYLES[f.severity]}]{f.severity}[/]", str(f.model_id), f.what)
    return table


def _audit(history: LedgerHistory, store: BlobStore, vault: str, private_key: str | None) -> AuditReport:
    """`audit`, turning a refusal of an anonymous read into a hint about `--key-env`."""
    from tclearn.audit.verify import audit

    try:
        return audit(history, store)
    except (AuthError, AccessDenied) as exc:
        if private_key is None:
            raise ConfigError(
                f"the vault at {vault} requires signed requests ({exc}); "
                "pass --key-env VAR naming an environment variable that holds the auditor's private key"
            ) from None
        raise


VaultOpt = typer.Option(..., "--vault", help="Vault URL: file:///path, memory://name or https://host.")
KeyEnvOpt = typer.Option(
    None, "--key-env", help="Name of an environment variable holding the auditor's hex private key (HTTP vault)."
)


@app.command()
def verify(
    deployment: Path = DeploymentOpt,
    vault: str = VaultOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
    url: str | None = UrlOpt,
    key_env: str | None = KeyEnvOpt,
) -> None:
    """Rebuild the history from the chain's logs and check every blob, quorum and parent; exit 1 on failure."""
    from tclearn.ledger.history import rebuild

    with user_errors():
        private_key = private_key_from_env(key_env)
        check_vault_url(vault)
        dep, client = open_deployment(deployment, url)
        store = open_vault(vault, private_key, dep)
        history = rebuild(client.events(from_block=dep.block))
        report = _audit(history, store, vault, private_key)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(_table(report))
        console.print(
            f"{report.models_checked} models checked, {report.blobs_verified} blobs verified, "
            f"lineage {' -> '.join(map(str, report.lineage))}"
        )
    if not report.ok:
        for error in report.errors:
            typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)


def _load_summary(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--summary {path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--summary {path}: not JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"--summary {path}: expected a JSON object, got {type(summary).__name__}")
    return summary


@app.command("report")
def report_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.html and its PNGs."),
    deployment: Path = DeploymentOpt,
    summary: Path | None = typer.Option(None, "--summary", help="summary.json of the run (e.g. from tclearn demo)."),
    vault: str | None = typer.Option(None, "--vault", help="Vault URL: also audit the run and show the verdict."),
    url: str | None = UrlOpt,
    key_env: str | None = KeyEnvOpt,
) -> None:
    """Write an HTML report of the run (summary, candidates, votes, lineage) rebuilt from the chain's logs."""
    from tclearn.audit.evidence import all_evidence
    from tclearn.audit.report import write_report
    from tclearn.ledger.history import rebuild

    with user_errors():
        run_summary = _load_summary(summary)
        private_key = private_key_from_env(key_env)
        if vault is not None:
            check_vault_url(vault)
        dep, client = open_deployment(deployment, url)
        store = open_vault(vault, private_key, dep) if vault is not None else None
        history = rebuild(client.events(from_block=dep.block))
        verdict = _audit(history, store, vault or "", private_key) if store is not None else None
        evidence = all_evidence(store, history) if store is not None else None
        path = write_report(out, history, run_summary, audit=verdict, evidence=evidence)
    typer.echo(str(path))
