"""The serve commands build their service's settings (file, environment, options) and hand them to the app
they serve: no `TCLEARN_*` variable is exported on the way, and uvicorn gets the app object. Every one takes
`--log-level` and `--log-format` (or `[log]` in its file) and hands uvicorn the logging they set up."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

import services.auditor.app
import services.member.app
import services.node.app
import services.supervisor.app
import services.vault.app
from tclearn.cli.app import app
from tclearn.config import ServiceSettings
from tests.test_settings import SITE

runner = CliRunner()


class Served:
    """What uvicorn was asked to serve, instead of serving it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: self.calls.append((app, kw)))

        def server_run(server: uvicorn.Server, *_args: object) -> None:
            server.started = True  # `tclearn node run` exits 1 when the server never started
            config = server.config
            given = {"log_config": config.log_config, "log_level": config.log_level}
            self.calls.append((config.app, {"host": config.host, "port": config.port, **given}))

        monkeypatch.setattr(uvicorn.Server, "run", server_run)

    @property
    def settings(self) -> Any:
        (app, _), *_ = self.calls
        assert isinstance(app, FastAPI)
        return app.state.settings


def _stub_app_for(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    """The service's `app_for` without opening anything (chain, keys): an empty app holding the settings."""

    def app_for(settings: ServiceSettings) -> FastAPI:
        stub = FastAPI()
        stub.state.settings = settings
        return stub

    monkeypatch.setattr(module, "app_for", app_for)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TCLEARN_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The serve commands set up the process' logging for real: put the test process' back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _invoke(*args: str) -> None:
    before = dict(os.environ)
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert dict(os.environ) == before, "a serve command changed the environment"


def test_vault_serve_passes_file_environment_and_options_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(monkeypatch)
    config = tmp_path / "vault.toml"
    config.write_text(f'store = "file://{tmp_path}/store"\ndatabase = "sqlite:///{tmp_path}/a.db"\n')
    monkeypatch.setenv("TCLEARN_VAULT_MAX_BYTES", "1234")

    _invoke("vault", "serve", "--config", str(config), "--port", "8799", "--public-reads")

    settings = served.settings
    assert settings.store == f"file://{tmp_path}/store" and settings.max_bytes == 1234 and settings.public_reads
    assert served.calls[0][1] == {"host": "127.0.0.1", "port": 8799, "log_config": None, "log_level": "info"}


@pytest.mark.parametrize(
    ("module", "argv", "toml", "expected"),
    [
        (
            services.supervisor.app,
            ["supervisor", "serve", "--max-values", "9"],
            'key_file = "/k"\n[server]\nhost = "0.0.0.0"\n',
            {"key_file": "/k", "max_values": 9, "server": ("0.0.0.0", 8710)},
        ),
        (
            services.auditor.app,
            ["auditor", "serve", "--vault", "/v", "--port", "8000"],
            'deployment = "d.json"\nvault = "/elsewhere"\n',
            {"vault": "/v", "deployment": Path("d.json"), "server": ("127.0.0.1", 8000)},
        ),
        (
            services.member.app,
            ["member", "serve", "--host", "0.0.0.0"],
            SITE,
            {"name": "hospital-1", "server": ("0.0.0.0", 8901)},
        ),
        (services.node.app, ["node", "run"], SITE, {"name": "hospital-1", "server": ("127.0.0.1", 8901)}),
    ],
    ids=["supervisor", "auditor", "member", "node"],
)
def test_every_serve_command_hands_its_settings_to_the_app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    argv: list[str],
    toml: str,
    expected: dict[str, Any],
) -> None:
    served = Served(monkeypatch)
    _stub_app_for(monkeypatch, module)
    config = tmp_path / "service.toml"
    config.write_text(toml)

    _invoke(*argv, "--config", str(config))

    settings = served.settings
    server = expected.pop("server")
    assert (settings.server.host, settings.server.port) == server
    assert {name: getattr(settings, name) for name in expected} == expected


SERVE_COMMANDS = [
    pytest.param(services.vault.app, ["vault", "serve"], "", id="vault"),
    pytest.param(services.supervisor.app, ["supervisor", "serve"], "", id="supervisor"),
    pytest.param(services.auditor.app, ["auditor", "serve"], 'deployment = "d.json"\nvault = "/v"\n', id="auditor"),
    pytest.param(services.member.app, ["member", "serve"], SITE, id="member"),
    pytest.param(services.node.app, ["node", "run"], SITE, id="node"),
]


@pytest.mark.parametrize(("module", "argv", "toml"), SERVE_COMMANDS)
def test_every_serve_command_takes_log_level_and_format_and_hands_them_to_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, argv: list[str], toml: str
) -> None:
    served = Served(monkeypatch)
    _stub_app_for(monkeypatch, module)
    config = tmp_path / "service.toml"
    config.write_text(toml)

    _invoke(*argv, "--config", str(config), "--log-level", "WARNING", "--log-format", "json")

    settings = served.settings
    assert (settings.log.level, settings.log.format) == ("warning", "json")
    assert {k: served.calls[0][1][k] for k in ("log_config", "log_level")} == {
        "log_config": None,
        "log_level": "warning",
    }
    (handler,) = logging.getLogger().handlers
    assert type(handler.formatter).__name__ == "JsonFormatter" and logging.getLogger().level == logging.WARNING


def test_the_log_section_comes_from_the_file_and_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(monkeypatch)
    config = tmp_path / "vault.toml"
    config.write_text(
        f'store = "file://{tmp_path}/store"\ndatabase = "sqlite:///{tmp_path}/access.db"\n'
        '[log]\nlevel = "debug"\nformat = "json"\n'
    )
    monkeypatch.setenv("TCLEARN_VAULT_LOG__FORMAT", "text")

    _invoke("vault", "serve", "--config", str(config))

    assert (served.settings.log.level, served.settings.log.format) == ("debug", "text")
    assert served.calls[0][1]["log_level"] == "debug"


def test_a_bad_log_level_is_named(tmp_path: Path) -> None:
    config = tmp_path / "vault.toml"
    config.write_text('[log]\nlevel = "loud"\n')

    option = runner.invoke(app, ["vault", "serve", "--log-level", "loud"])
    setting = runner.invoke(app, ["vault", "serve", "--config", str(config)])

    assert option.exit_code == 2 and "loud" in option.output and "Traceback" not in option.output
    assert setting.exit_code == 1 and "log.level" in setting.output and "Traceback" not in setting.output


def test_a_bad_setting_is_one_line_naming_the_file_and_the_field(tmp_path: Path) -> None:
    config = tmp_path / "vault.toml"
    config.write_text("max_bytes = -1\n")

    result = runner.invoke(app, ["vault", "serve", "--config", str(config)])

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "vault.toml" in result.output and "max_bytes" in result.output


def test_auditor_token_prints_a_token_and_the_digest_settings_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["auditor", "token"])
    assert result.exit_code == 0, result.output
    token = result.output.split("token: ")[1].split()[0]
    digest = result.output.split('token_sha256 = "')[1].split('"')[0]
    assert digest == hashlib.sha256(token.encode()).hexdigest() and len(token) >= 40


@pytest.mark.parametrize(("toml", "printed"), [("", True), (f'token_sha256 = "{"ab" * 32}"\n', False)])
def test_auditor_serve_without_a_token_makes_one_for_the_run_and_prints_the_dashboard_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, printed: bool
) -> None:
    served = Served(monkeypatch)
    _stub_app_for(monkeypatch, services.auditor.app)
    config = tmp_path / "auditor.toml"
    config.write_text(f'deployment = "d.json"\nvault = "/v"\n{toml}')

    result = runner.invoke(app, ["auditor", "serve", "--config", str(config), "--port", "8123"])

    assert result.exit_code == 0, result.output
    digest = served.settings.token_sha256
    if printed:
        line = next(line for line in result.output.splitlines() if line.startswith("dashboard: "))
        token = line.split("http://127.0.0.1:8123/#token=")[1]
        assert digest == hashlib.sha256(token.encode()).hexdigest()
    else:
        assert "dashboard:" not in result.output and digest == "ab" * 32
