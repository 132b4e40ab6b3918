"""`tclearn node run`: the validator node daemon of one hospital, as a small HTTP service (health, metrics)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import typer

from tclearn.cli.common import LogFormatOpt, LogLevelOpt, log_options, start_logging, user_errors
from tclearn.logs import LogFormat, LogLevel

app = typer.Typer(help="The node daemon: general, validator and keeper duties, driven by chain events.")
log = logging.getLogger("tclearn.node")


@app.command()
def run(
    config: Path = typer.Option(
        Path("node.toml"), "--config", "-c", help="The hospital's site file; TCLEARN_NODE_* variables override it."
    ),
    log_level: LogLevel | None = LogLevelOpt,
    log_format: LogFormat | None = LogFormatOpt,
) -> None:
    """Follow the chain and perform this hospital's duties until SIGTERM or Ctrl-C (exit 0)."""
    import uvicorn

    from services.node.app import app_for  # the CLI wires the library to the services, never the reverse
    from tclearn.site.config import NodeSettings, load_site_config

    with user_errors():
        site = load_site_config(config, NodeSettings, {"log": log_options(log_level, log_format)})
        logged = start_logging(site)  # httpx quietened: one line per duty, not one per vault request
        service = app_for(site)  # errors opening the site (chain, vault, data) are one line here
        received: list[int] = []

        def note(sig: int, _frame: FrameType | None) -> None:
            received.append(sig)  # uvicorn re-raises the signal that stopped it: noted here, it exits 0

        previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
        server = uvicorn.Server(
            uvicorn.Config(
                service,
                host=site.server.host,
                port=site.server.port,
                access_log=site.log.level is LogLevel.DEBUG,
                **logged,
            )
        )
        try:
            server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not server.started:
            raise typer.Exit(1)
        how = f"on {signal.Signals(received[0]).name}" if received else "on request"
        log.info("node %s stopped cleanly %s", site.name, how)
