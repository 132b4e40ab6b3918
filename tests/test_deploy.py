"""deploy/ cannot silently rot: every command it runs must parse as a real `tclearn` command line.

The compose services on the tclearn image and the systemd units' ExecStart lines are parsed by the
CLI's own Typer app (options included, nothing is run); the config files they name must exist and
the ones tclearn can already read must load. Every long-running compose service has a health check that
probes the port its own command listens on.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml

from tclearn.audit.config import AuditorSettings
from tclearn.cli.app import app
from tclearn.config import load_coalition_config, load_settings
from tclearn.site.config import MemberSettings, NodeSettings, load_site_config
from tclearn.vault.config import VaultSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CONFIG_MOUNT = "/etc/tclearn/"


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def compose_commands() -> list[tuple[str, list[str]]]:
    return [
        (name, [str(part) for part in service["command"]])
        for name, service in _compose()["services"].items()
        if service.get("image", "").startswith("tclearn")
    ]


def unit_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment, method-assign]
        parser.read(unit)
        argv = shlex.split(parser["Service"]["ExecStart"].replace("%i", "1"))
        commands.append((unit.name, [Path(argv[0]).name, *argv[1:]]))
    return commands


def parse(argv: list[str]) -> Any:
    """The tclearn command `argv` names, its options parsed; None if a group lacks the subcommand.

    Typer's (vendored) click raises a `typer.TyperException` for an unknown option or a bad value.
    """
    assert argv[0] == "tclearn", f"{argv}: not a tclearn command"
    command: Any = typer.main.get_command(app)
    args, path = argv[1:], ["tclearn"]
    while hasattr(command, "commands"):  # a group
        assert args, f"{argv}: names the group `{' '.join(path)}`, not a command"
        name, *args = args
        sub = command.commands.get(name)
        if sub is None:
            return None
        command, path = sub, [*path, name]
    with command.make_context(" ".join(path), list(args)):
        return command


CASES = [pytest.param(argv, id=name) for name, argv in compose_commands() + unit_commands()]


@pytest.mark.parametrize("argv", CASES)
def test_every_deploy_command_is_a_real_tclearn_command_line(argv: list[str]) -> None:
    command = parse(argv)

    assert command is not None, f"{' '.join(argv)}: no such tclearn command"
    for part in argv:
        if part.startswith(CONFIG_MOUNT) and part.endswith(".toml"):
            assert (DEPLOY / "config" / part.removeprefix(CONFIG_MOUNT)).is_file(), f"{part} is not in deploy/config"


def test_the_compose_file_covers_every_role() -> None:
    services = _compose()["services"]

    roles = {tuple(cmd[1:3]) for _, cmd in compose_commands()}
    assert {("vault", "serve"), ("auditor", "serve"), ("member", "serve"), ("node", "run")} <= roles
    assert sum(n.startswith("member-") for n in services) == sum(n.startswith("node-") for n in services) == 3
    assert "anvil" in services


PROBE = re.compile(r"http://127\.0\.0\.1:(\d+)(/\S*?)'")


def listening_port(argv: list[str]) -> int:
    """The port a compose command's service listens on: its --port, else its config file's `[server] port`."""
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    config = DEPLOY / "config" / argv[argv.index("--config") + 1].removeprefix(CONFIG_MOUNT)
    port: int = tomllib.loads(config.read_text())["server"]["port"]
    return port


def test_every_long_running_compose_service_has_a_health_check() -> None:
    services = _compose()["services"]
    commands = dict(compose_commands())

    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if service.get("restart") == "no":  # a one-shot job: nothing to probe
            assert check == {"disable": True}, name
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        if name in commands:
            probe = PROBE.search(" ".join(check["test"]))
            assert probe, f"{name}: the check fetches no http://127.0.0.1 URL: {check['test']}"
            assert (int(probe[1]), probe[2]) == (listening_port(commands[name]), "/health"), name
    assert {"vault", "auditor", "member-1", "node-1"} <= {n for n in commands if "test" in services[n]["healthcheck"]}


def test_the_example_configs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TCLEARN_")]:
        monkeypatch.delenv(name)

    coalition = load_coalition_config(DEPLOY / "config" / "coalition.toml")
    auditor = load_settings(AuditorSettings, DEPLOY / "config" / "auditor.toml")
    vault = load_settings(VaultSettings, DEPLOY / "config" / "vault.toml")
    sites = [
        load_site_config(path, model)
        for model, pattern in ((MemberSettings, "member-*.toml"), (NodeSettings, "node-*.toml"))
        for path in sorted((DEPLOY / "config").glob(pattern))
    ]

    assert len(coalition.members) == 4 and coalition.chain.chain_id == 31337
    assert auditor.vault == "http://vault:8700" and auditor.keystore is not None
    assert vault.deployment == "/shared/deployment.json" and vault.server.port == 8700
    assert len(sites) == 6 and all(site.keystore is not None for site in sites)


def test_the_parser_rejects_what_the_cli_would() -> None:
    assert parse(["tclearn", "nothing", "here"]) is None
    with pytest.raises(typer.TyperException, match=re.escape("--bogus")):
        parse(["tclearn", "auditor", "serve", "--bogus", "1"])
    with pytest.raises(typer.TyperException, match="valid integer"):
        parse(["tclearn", "auditor", "serve", "--port", "eighty"])
    with pytest.raises(AssertionError, match="names the group"):
        parse(["tclearn", "vault"])
