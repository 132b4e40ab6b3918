"""`tclearn member`: serve a member's API; fine-tune the coalition's head on a member's own data. Members are
admitted, changed and removed by proposals (`tclearn gov`)."""

from __future__ import annotations

from pathlib import Path

import typer

from tclearn.cli.common import (
    HostOpt,
    LogFormatOpt,
    LogLevelOpt,
    PortOpt,
    console,
    log_options,
    server_options,
    start_logging,
    user_errors,
)
from tclearn.logs import LogFormat, LogLevel

app = typer.Typer(
    help="Coalition members: serve one's API, fine-tune the head locally (admit and remove them: `tclearn gov`).",
    no_args_is_help=True,
)


@app.command("serve")
def serve(
    config: Path = typer.Option(
        Path("member.toml"), "--config", "-c", help="The site's member.toml; TCLEARN_MEMBER_* variables override it."
    ),
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
    log_level: LogLevel | None = LogLevelOpt,
    log_format: LogFormat | None = LogFormatOpt,
) -> None:
    """Run this hospital's member API (docs/member-api.md); the operator token comes from the environment."""
    import uvicorn

    from services.member.app import app_for  # the CLI wires the library to the services, never the reverse
    from tclearn.site.config import MemberSettings, load_site_config

    with user_errors():  # also a bad chain, vault or data folder: opening the site raises them here
        given = {"server": server_options(host, port), "log": log_options(log_level, log_format)}
        site = load_site_config(config, MemberSettings, given)
        logged = start_logging(site)
        service = app_for(site)
        uvicorn.run(service, host=site.server.host, port=site.server.port, access_log=access_log, **logged)


@app.command("finetune")
def finetune(
    config: Path = typer.Option(
        Path("member.toml"), "--config", "-c", help="The site's member.toml; TCLEARN_MEMBER_* variables override it."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs (default: the site's [training])."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Batch size (default: [training])."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: [training])."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's record as JSON."),
) -> None:
    """Fine-tune the committed head on this hospital's data for its own use: scored on its local test set L
    before and after, written under the site's `finetuned` folder; never stored in the vault or submitted."""
    import json
    import uuid

    from rich.console import Console
    from rich.progress import Progress

    from tclearn.site.config import MemberSettings, load_site_config
    from tclearn.site.finetune import FinetuneOptions
    from tclearn.site.finetune import finetune as run
    from tclearn.site.open import open_site

    with user_errors():
        settings = load_site_config(config, MemberSettings)
        options = FinetuneOptions(epochs, batch_size, lr)
        site = open_site(settings)
        try:
            with Progress(console=Console(stderr=True), transient=True) as bar:  # stdout: the result alone
                shown = bar.add_task("pulling", total=1.0)
                done = run(
                    site.coalition,
                    site.hospital,
                    settings.finetuned,
                    options,
                    run_id=uuid.uuid4().hex,
                    progress=lambda phase, fraction: bar.update(shown, description=phase, completed=fraction),
                )
        finally:
            site.close()
    if as_json:
        typer.echo(json.dumps(done.summary(), indent=2, sort_keys=True))
        return
    record, scores = done.record, done.record.local_test
    console.print(
        f"fine-tuned model {record.head_id} on {record.site}'s data ({record.training['samples']} samples, "
        f"{record.training['epochs']} epoch(s)): L {scores.metric} {_score(scores.before)} -> "
        f"{_score(scores.after)} on {scores.samples} samples"
    )
    console.print(f"model: {done.model_path}  (tclearn predict --model {done.model_path} ...)")
    console.print(f"record: {done.model_path.with_suffix('.meta.json')}")


def _score(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"
