"""`tclearn auditor serve`: the auditor's dashboard and JSON API over a coalition's chain and vault;
`tclearn auditor token`: a bearer token for it.

Mounted under `tclearn auditor` by `tclearn/cli/app.py`. `serve` builds `AuditorSettings` — the `--config`
TOML file, `TCLEARN_AUDITOR_*` variables over it, the options over both — and hands them to the service. Without
a `token_sha256` it makes a token for this run and prints the dashboard's URL carrying it (`/#token=...`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tclearn.cli.common import (
    ConfigOpt,
    HostOpt,
    LogFormatOpt,
    LogLevelOpt,
    PortOpt,
    log_options,
    server_options,
    user_errors,
)
from tclearn.cli.common import serve as serve_service
from tclearn.errors import ConfigError
from tclearn.logs import LogFormat, LogLevel

if TYPE_CHECKING:
    from tclearn.audit.config import AuditorSettings

app = typer.Typer(help="The auditor: lineage, votes, blob integrity and the vault's access log in a dashboard.")


@app.callback()
def _group() -> None:
    """The auditor: lineage, votes, blob integrity and the vault's access log in a dashboard."""


@app.command()
def token() -> None:
    """Make an auditor token: give the token to the auditors, put its sha256 in auditor.toml."""
    from tclearn.audit.token import new_token

    value, digest = new_token()
    typer.echo(f"token: {value}")
    typer.echo(f'token_sha256 = "{digest}"   # auditor.toml (or TCLEARN_AUDITOR_TOKEN_SHA256)')


def _with_run_token(settings: AuditorSettings, scheme: str = "http") -> Any:
    """The service for `settings`; without a token_sha256, one made for this run, printed with the dashboard URL."""
    from services.auditor.app import app_for  # the CLI wires the library to the services, never the reverse
    from tclearn.audit.token import new_token

    if settings.token_sha256 is None:
        value, digest = new_token()
        settings = settings.model_copy(update={"token_sha256": digest})
        where = f"{scheme}://{settings.server.host}:{settings.server.port}/#token={value}"
        typer.echo(f"no token_sha256 in the settings: this run's auditor token is {value}\ndashboard: {where}")
    return app_for(settings)


@app.command()
def serve(
    deployment: Path | None = typer.Option(None, "--deployment", "-d", help="Deployment file of the coalition."),
    vault: str | None = typer.Option(
        None, "--vault", help="Vault service URL (https://...), fsspec URL (file:///...) or local folder."
    ),
    chain: str | None = typer.Option(None, "--chain", help="JSON-RPC URL (default: the deployment file's)."),
    keystore: Path | None = typer.Option(
        None, "--keystore", help="Keystore signing vault reads (password in TCLEARN_KEYSTORE_PASSWORD)."
    ),
    access_db: str | None = typer.Option(None, "--access-db", help="SQLAlchemy URL of a local vault's access log."),
    state: str | None = typer.Option(None, "--state", help="SQLAlchemy URL of the auditor's event cursor."),
    confirmations: int | None = typer.Option(None, "--confirmations", help="Read only blocks this deep."),
    config: Path | None = ConfigOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    log_level: LogLevel | None = LogLevelOpt,
    log_format: LogFormat | None = LogFormatOpt,
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM): serve HTTPS."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate chain (PEM)."),
) -> None:
    """Serve the dashboard and its JSON API (behind TLS, or with --ssl-*, for anything but loopback)."""
    from tclearn.audit.config import AuditorSettings

    given = {
        "deployment": deployment,
        "vault": vault,
        "chain": chain,
        "keystore": keystore,
        "access_db": access_db,
        "state": state,
        "confirmations": confirmations,
        "server": server_options(host, port),
        "log": log_options(log_level, log_format),
    }
    with user_errors():
        if (ssl_keyfile is None) != (ssl_certfile is None):
            raise ConfigError("give both --ssl-keyfile and --ssl-certfile, or neither")
    serve_service(
        AuditorSettings,
        config,
        given,
        functools.partial(_with_run_token, scheme="https" if ssl_keyfile else "http"),
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
    )
