"""`tclearn supervisor ...`: make the CKKS keys (variant C), publish the public context, run the service.

The secret key file is encrypted with `TCLEARN_KEY_PASSWORD` (or a prompt); requests to the vault are
signed with `TCLEARN_ETH_KEY`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tclearn.cli.common import export_settings, user_errors
from tclearn.cli.vault import VaultOption, _client
from tclearn.he.config import SupervisorSettings
from tclearn.he.keys import generate, publish_context, save_secret
from tclearn.vault.keys import key_password

app = typer.Typer(help="Variant C supervisor: holds the CKKS secret key, decrypts on request, logs every request.")
_DEFAULTS = SupervisorSettings.model_fields


@app.command()
def keygen(
    key_file: Path = typer.Argument(..., help="where to write the encrypted secret context"),
    vault: str = VaultOption,
) -> None:
    """Make a CKKS context, keep its secret part in KEY_FILE, publish the public context in the vault.

    Prints the context hash: register it on chain as the supervisor's encryption key.
    """
    with user_errors():
        he, public = generate()
        save_secret(key_file, he, key_password("New supervisor key password: "))
        typer.echo(publish_context(_client(vault), public))


@app.command()
def serve(
    key_file: Path = typer.Option(Path(str(_DEFAULTS["key_file"].default)), help="encrypted secret context file"),
    database: str = typer.Option(str(_DEFAULTS["database"].default), help="SQLAlchemy URL of the decryption log"),
    deployment: Path | None = typer.Option(None, help="Deployment file: members come from the Coalition contract"),
    members: Path | None = typer.Option(None, help="JSON member file {address: key hex or null} (no chain)"),
    max_request_bytes: int = typer.Option(64 << 20, help="largest request body in bytes"),
    max_values: int = typer.Option(1 << 16, help="most values decrypted per request"),
    requests_per_minute: int = typer.Option(120, help="requests per member per minute"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8710),
) -> None:
    """Run the supervisor service (put it behind TLS for anything but loopback)."""
    import uvicorn

    settings = {
        "KEY_FILE": key_file,
        "DATABASE": database,
        "MAX_REQUEST_BYTES": max_request_bytes,
        "MAX_VALUES": max_values,
        "REQUESTS_PER_MINUTE": requests_per_minute,
        "DEPLOYMENT": deployment,
        "MEMBERS": members,
    }
    export_settings("TCLEARN_SUPERVISOR_", settings)
    with user_errors():
        uvicorn.run("services.supervisor.app:app_from_env", factory=True, host=host, port=port)
