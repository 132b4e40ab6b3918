"""`tclearn supervisor ...`: make the CKKS keys (variant C), publish the public context, run the service.

`serve` builds `SupervisorSettings` (its `--config` file, `TCLEARN_SUPERVISOR_*` variables, its options) and
hands them to the service. The secret key file is encrypted with `TCLEARN_KEY_PASSWORD` (or a prompt);
requests to the vault are signed with `TCLEARN_ETH_KEY`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tclearn.cli.common import (
    ConfigOpt,
    HostOpt,
    LogFormatOpt,
    LogLevelOpt,
    PortOpt,
    log_options,
    server_options,
    text,
    user_errors,
)
from tclearn.cli.common import serve as serve_service
from tclearn.cli.vault import CoalitionOption, VaultOption, _client
from tclearn.he.config import SupervisorSettings
from tclearn.logs import LogFormat, LogLevel

app = typer.Typer(help="Variant C supervisor: holds the CKKS secret key, decrypts on request, logs every request.")
_DEFAULT = {name: field.default for name, field in SupervisorSettings.model_fields.items()}


@app.command()
def keygen(
    key_file: Path = typer.Argument(..., help="where to write the encrypted secret context"),
    vault: str = VaultOption,
    deployment: Path | None = CoalitionOption,
) -> None:
    """Make a CKKS context, keep its secret part in KEY_FILE, publish the public context in the vault.

    Prints the context hash: register it on chain as the supervisor's encryption key.
    """
    from tclearn.he.keys import generate, publish_context, save_secret
    from tclearn.vault.keys import key_password

    with user_errors():
        he, public = generate()
        save_secret(key_file, he, key_password("New supervisor key password: "))
        typer.echo(publish_context(_client(vault, deployment), public))


@app.command()
def serve(
    config: Path | None = ConfigOpt,
    key_file: Path | None = typer.Option(None, help=f"encrypted secret context file (default {_DEFAULT['key_file']})"),
    database: str | None = typer.Option(
        None, help=f"SQLAlchemy URL of the decryption log (default {_DEFAULT['database']})"
    ),
    deployment: Path | None = typer.Option(None, help="Deployment file: members come from the Coalition contract"),
    members: Path | None = typer.Option(None, help="JSON member file {address: key hex or null} (no chain)"),
    max_request_bytes: int | None = typer.Option(
        None, help=f"largest request body in bytes (default {_DEFAULT['max_request_bytes']})"
    ),
    max_values: int | None = typer.Option(
        None, help=f"most values decrypted per request (default {_DEFAULT['max_values']})"
    ),
    requests_per_minute: int | None = typer.Option(
        None, help=f"requests per member per minute (default {_DEFAULT['requests_per_minute']})"
    ),
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    log_level: LogLevel | None = LogLevelOpt,
    log_format: LogFormat | None = LogFormatOpt,
) -> None:
    """Run the supervisor service (put it behind TLS for anything but loopback)."""
    from services.supervisor.app import app_for  # the CLI wires the library to the services, never the reverse

    given = {
        "key_file": text(key_file),
        "database": database,
        "max_request_bytes": max_request_bytes,
        "max_values": max_values,
        "requests_per_minute": requests_per_minute,
        "deployment": text(deployment),
        "members": text(members),
        "server": server_options(host, port),
        "log": log_options(log_level, log_format),
    }
    serve_service(SupervisorSettings, config, given, app_for)
