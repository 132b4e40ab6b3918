"""What several CLI commands share: the console, signers, opening a deployment, serve commands' options and
logging.

`tclearn --help` imports every CLI module, so none of them imports torch, MONAI, web3, eth-account, FastAPI or
SQLAlchemy at module level: each command imports what it needs when it runs (`tests/test_cli_imports.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from tclearn.errors import ConfigError, TclearnError
from tclearn.logs import LogFormat, LogLevel

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from tclearn.config import ServiceSettings
    from tclearn.ledger.chain import Chain
    from tclearn.ledger.client import LedgerClient
    from tclearn.ledger.deployment import Deployment

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


def sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """`96,96,64` given to `option` as a tuple of positive integers; None when not given."""
    if not text:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ConfigError(f"{option} must be positive integers separated by commas, e.g. 96,96,96; got {text!r}")
    return values


@contextmanager
def user_errors(status: int = 1) -> Iterator[None]:
    """Inside a command: a `TclearnError` becomes one line on stderr and exit `status` (1), never a traceback."""
    try:
        yield
    except TclearnError as exc:
        report(exc)
        raise typer.Exit(status) from None


ConfigOpt = typer.Option(
    None, "--config", "-c", help="TOML settings file; TCLEARN_<SERVICE>_* variables and the options override it."
)
HostOpt = typer.Option(None, "--host", help="Listen address (default: the settings' server.host, else 127.0.0.1).")
PortOpt = typer.Option(None, "--port", help="Listen port (default: the settings' server.port, else the service's own).")


LogLevelOpt = typer.Option(
    None, "--log-level", case_sensitive=False, help="debug, info, warning or error (default: the settings' log.level)."
)
LogFormatOpt = typer.Option(
    None,
    "--log-format",
    case_sensitive=False,
    help="text or json lines (default: the settings' log.format, else text).",
)


def log_options(level: LogLevel | None, fmt: LogFormat | None) -> dict[str, object] | None:
    """--log-level and --log-format as an override of the settings' `[log]` section (None: neither was given)."""
    given: dict[str, object] = {key: value for key, value in (("level", level), ("format", fmt)) if value is not None}
    return given or None


def start_logging(settings: ServiceSettings) -> dict[str, Any]:
    """Logging as `settings.log` says (`tclearn.logs.setup_logging`); the options that keep uvicorn's loggers
    (its access lines included) on that one handler."""
    from tclearn.logs import setup_logging

    setup_logging(settings.log.level, settings.log.format)
    return {"log_config": None, "log_level": settings.log.level.value}


def server_options(host: str | None, port: int | None) -> dict[str, object] | None:
    """--host and --port as an override of the settings' `[server]` section (None: neither was given)."""
    given: dict[str, object] = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    return given or None


def text(value: Path | None) -> str | None:
    """A path option as the string setting it overrides."""
    return None if value is None else str(value)


S = TypeVar("S", bound="ServiceSettings")


def serve(
    model: type[S], config: Path | None, given: Mapping[str, Any], app_for: Callable[[S], Any], **options: Any
) -> None:
    """A serve command's body: the settings (`config` file, environment, the `given` options), the service's
    app built from them (`app_for`), served by uvicorn where `[server]` says (`options` go to uvicorn)."""
    import uvicorn

    from tclearn.config import load_settings

    with user_errors():  # a bad setting, or a chain, vault or key file that does not open: one line
        settings = load_settings(model, config, given)
        logged = start_logging(settings)
        service = app_for(settings)
    uvicorn.run(service, host=settings.server.host, port=settings.server.port, **logged, **options)


def signer(chain: Chain, keystore: Path | None, dev_account: int | None) -> LocalAccount:
    """The account that signs: --keystore (password from env or prompt) or --dev-account N."""
    from tclearn.ledger.accounts import choose_signer

    return choose_signer(chain.chain_id, chain.embedded, keystore, dev_account)


def open_as(
    deployment: Path, url: str | None, keystore: Path | None, dev_account: int | None
) -> tuple[LedgerClient, LocalAccount]:
    """The deployment's client and the account that will sign through it."""
    _, client = open_deployment(deployment, url)
    return client, signer(client.chain, keystore, dev_account)


def open_deployment(deployment: Path, url: str | None) -> tuple[Deployment, LedgerClient]:
    """The deployment file and a client of its contract (`tclearn.ledger.deployment.open_deployment`)."""
    from tclearn.ledger.deployment import open_deployment as open_it

    return open_it(deployment, url)
