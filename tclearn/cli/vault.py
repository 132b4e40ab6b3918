"""`tclearn vault ...`: run the vault service, make member keys, store and fetch (sealed) models.

Mounted under `tclearn vault` by `tclearn/cli/app.py`. `serve` builds `VaultSettings` (its `--config` file,
`TCLEARN_VAULT_*` variables, its options) and hands them to the service. Requests to a vault are signed with
the Ethereum key in `TCLEARN_ETH_KEY` (hex); X25519 key files are decrypted with `TCLEARN_KEY_PASSWORD`
or a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
)
from tclearn.cli.common import serve as serve_service
from tclearn.errors import ConfigError
from tclearn.logs import LogFormat, LogLevel
from tclearn.vault.config import VaultSettings
from tclearn.vault.store import CHUNK_SIZE

if TYPE_CHECKING:
    from tclearn.vault.http import HttpStore

ETH_KEY_ENV = "TCLEARN_ETH_KEY"

app = typer.Typer(help="Model vault: content-addressed blob storage with envelope encryption.")

VaultOption = typer.Option("http://127.0.0.1:8700", "--vault", envvar="TCLEARN_VAULT_URL", help="vault URL")
CoalitionOption = typer.Option(
    None,
    "--deployment",
    envvar="TCLEARN_DEPLOYMENT",
    help="deployment file of the vault's coalition: requests are signed for it (none: a member-file vault)",
)


def _client(vault: str, deployment: Path | None, anonymous: bool = False) -> HttpStore:
    from tclearn.vault.audience import CoalitionId
    from tclearn.vault.http import HttpStore

    key = os.environ.get(ETH_KEY_ENV)
    if key is None and not anonymous:
        raise ConfigError(f"set {ETH_KEY_ENV} to the hex private key of your coalition account")
    return HttpStore(vault, key, coalition=CoalitionId.of_deployment(deployment))


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def _write(path: Path, chunks: Iterator[bytes]) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


_DEFAULT = {name: field.default for name, field in VaultSettings.model_fields.items()}


@app.command()
def serve(
    config: Path | None = ConfigOpt,
    store: str | None = typer.Option(None, help=f"fsspec URL of the blob store (default {_DEFAULT['store']})"),
    database: str | None = typer.Option(
        None, help=f"SQLAlchemy URL of the access log (default {_DEFAULT['database']})"
    ),
    deployment: Path | None = typer.Option(None, help="Deployment file: members come from the Coalition contract"),
    members: Path | None = typer.Option(None, help="JSON member file {address: x25519 hex or null} (no chain)"),
    max_bytes: int | None = typer.Option(None, help=f"largest blob accepted (default {_DEFAULT['max_bytes']})"),
    public_reads: bool | None = typer.Option(
        None, "--public-reads/--no-public-reads", help="variant A: allow unsigned reads (default no)"
    ),
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    log_level: LogLevel | None = LogLevelOpt,
    log_format: LogFormat | None = LogFormatOpt,
) -> None:
    """Run the vault service (put it behind TLS for anything but loopback)."""
    from services.vault.app import app_for  # the CLI wires the library to the services, never the reverse

    given = {
        "store": store,
        "database": database,
        "max_bytes": max_bytes,
        "public_reads": public_reads,
        "deployment": text(deployment),
        "members": text(members),
        "server": server_options(host, port),
        "log": log_options(log_level, log_format),
    }
    serve_service(VaultSettings, config, given, app_for)


@app.command()
def keygen(path: Path = typer.Argument(..., help="where to write the encrypted X25519 key")) -> None:
    """Make a member encryption key; prints the public key to register on chain."""
    from tclearn.vault.keys import generate_key, key_password, save_key

    public = save_key(path, generate_key(), key_password("New key password: "))
    typer.echo(public.hex())


@app.command()
def put(path: Path, vault: str = VaultOption, deployment: Path | None = CoalitionOption) -> None:
    """Store a file in clear (variant A); prints its sha256."""
    typer.echo(_client(vault, deployment).put_stream(_read(path)))


@app.command()
def get(
    sha256: str, out: Path, vault: str = VaultOption, deployment: Path | None = CoalitionOption, anonymous: bool = False
) -> None:
    """Fetch a blob into OUT, checking its hash."""
    _write(out, _client(vault, deployment, anonymous).iter_blob(sha256))


@app.command("seal")
def seal_command(
    path: Path, members: Path, vault: str = VaultOption, deployment: Path | None = CoalitionOption
) -> None:
    """Encrypt a file for every member with a key in the member file (variant B); prints the model hash."""
    from tclearn.vault.directory import StaticDirectory
    from tclearn.vault.envelope import recipients_of, seal

    recipients = recipients_of(StaticDirectory.from_file(members))
    typer.echo(seal(_client(vault, deployment), _read(path), recipients))


@app.command("unseal")
def unseal_command(
    sha256: str, out: Path, key: Path, vault: str = VaultOption, deployment: Path | None = CoalitionOption
) -> None:
    """Decrypt a sealed model into OUT with your X25519 key file."""
    from tclearn.vault.envelope import unseal
    from tclearn.vault.keys import key_password, load_key

    client = _client(vault, deployment)
    private = load_key(key, key_password())
    _write(out, unseal(client, sha256, client_address(), private))


@app.command("grant")
def grant_command(
    sha256: str, members: Path, key: Path, vault: str = VaultOption, deployment: Path | None = CoalitionOption
) -> None:
    """Add wraps of a model you can read for members of the member file who lack one."""
    from tclearn.vault.directory import StaticDirectory
    from tclearn.vault.envelope import grant, public_bytes, recipients_of
    from tclearn.vault.keys import key_password, load_key

    private = load_key(key, key_password())
    keyring = grant(
        _client(vault, deployment), sha256, client_address(), private, recipients_of(StaticDirectory.from_file(members))
    )
    typer.echo(f"{len(keyring.wraps)} recipient(s); you are {public_bytes(private).hex()[:16]}...")


def client_address() -> str:
    from eth_account import Account

    key = os.environ.get(ETH_KEY_ENV)
    if key is None:
        raise ConfigError(f"set {ETH_KEY_ENV} to the hex private key of your coalition account")
    return str(Account.from_key(key).address)
