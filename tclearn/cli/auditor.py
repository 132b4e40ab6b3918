"""`tclearn auditor serve`: the auditor's dashboard and JSON API over a coalition's chain and vault.

Mounted under `tclearn auditor` by `tclearn/cli/app.py`. The options become `TCLEARN_AUDITOR_*` variables
read by `services.auditor.app:app_from_env`, which uvicorn imports by name (the library never imports
services); `--config FILE` gives the same settings as TOML, options and variables override it.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tclearn.audit.config import CONFIG_ENV, AuditorSettings
from tclearn.cli.common import export_settings, user_errors
from tclearn.config import load_deployment, load_settings
from tclearn.errors import ConfigError

app = typer.Typer(help="The auditor: lineage, votes, blob integrity and the vault's access log in a dashboard.")


@app.callback()
def _group() -> None:
    """The auditor: lineage, votes, blob integrity and the vault's access log in a dashboard."""


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
    config: Path | None = typer.Option(None, "--config", help="TOML file with the same settings."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8800, "--port"),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM): serve HTTPS."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate chain (PEM)."),
) -> None:
    """Serve the dashboard and its JSON API (behind TLS, or with --ssl-*, for anything but loopback)."""
    import uvicorn

    given = {
        "DEPLOYMENT": deployment,
        "VAULT": vault,
        "CHAIN": chain,
        "KEYSTORE": keystore,
        "ACCESS_DB": access_db,
        "STATE": state,
        "CONFIRMATIONS": confirmations,
    }
    with user_errors():
        if (ssl_keyfile is None) != (ssl_certfile is None):
            raise ConfigError("give both --ssl-keyfile and --ssl-certfile, or neither")
        export_settings("TCLEARN_AUDITOR_", given)
        if config is not None:
            os.environ[CONFIG_ENV] = str(config)
        settings = load_settings(AuditorSettings, config)  # a bad setting is one line here, not a uvicorn traceback
        load_deployment(settings.deployment)
    uvicorn.run(
        "services.auditor.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
    )
