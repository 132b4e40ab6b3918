"""The one settings system: every service's settings from its TOML file, overridden by its environment
variables (nested sections with `__`), overridden by the caller; bad values are one `ConfigError` naming the
file and the field; what `dump_settings` writes loads back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tclearn.audit.config import AuditorSettings
from tclearn.config import ServiceSettings, dump_settings, load_settings, settings_from_env
from tclearn.errors import ConfigError, NotFoundError
from tclearn.he.config import SupervisorSettings
from tclearn.learning.attacks import Attack
from tclearn.learning.defaults import COALITION_TRAINING
from tclearn.simulation import up
from tclearn.site.config import MemberSettings, NodeSettings, SiteConfig, TrainingSection, load_site_config
from tclearn.vault.config import VaultSettings

SITE = """name = "hospital-1"
deployment = "deployment.json"
vault_url = "http://127.0.0.1:9"
dev_account = 1
data = "data"
global_test = "global"
[training]
epochs = 3
[server]
port = 8901
"""
AUDITOR = 'deployment = "deployment.json"\nvault = "/srv/vault"\n[server]\nport = 8801\n'
VAULT = 'store = "file:///srv/store"\n[server]\nport = 8701\n'
SUPERVISOR = 'key_file = "/srv/ckks.key"\n[server]\nport = 8711\n'

# (model, its file, environment variables without the prefix, what they must give, a sibling the file gave)
SERVICES = [
    (VaultSettings, VAULT, {"STORE": "memory://s", "SERVER__HOST": "::"}, {"store": "memory://s", "server.host": "::"}),
    (
        SupervisorSettings,
        SUPERVISOR,
        {"MAX_VALUES": "7", "SERVER__HOST": "0.0.0.0"},
        {"max_values": 7, "server.host": "0.0.0.0"},
    ),
    (AuditorSettings, AUDITOR, {"VAULT": "/v2", "SERVER__HOST": "::"}, {"vault": "/v2", "server.host": "::"}),
    (
        MemberSettings,
        SITE,
        {"VAULT_URL": "http://v:1", "TRAINING__LR": "0.5"},
        {"vault_url": "http://v:1", "training.lr": 0.5},
    ),
    (NodeSettings, SITE, {"POLL_INTERVAL": "2.5", "SERVER__HOST": "::"}, {"poll_interval": 2.5, "server.host": "::"}),
]
SIBLING = {"server": "port", "training": "epochs"}  # set by every file above, beside the overridden field


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TCLEARN_")]:
        monkeypatch.delenv(name)


def _get(settings: object, dotted: str) -> Any:
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


@pytest.mark.parametrize(("model", "toml", "env", "expected"), SERVICES)
def test_each_service_reads_its_file_and_its_environment_overrides_it_nested_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: type[ServiceSettings],
    toml: str,
    env: dict[str, str],
    expected: dict[str, object],
) -> None:
    path = tmp_path / "service.toml"
    path.write_text(toml)
    from_file = load_settings(model, path)
    for name, value in env.items():
        monkeypatch.setenv(model.env_prefix() + name, value)

    settings = load_settings(model, path)

    assert {name: _get(settings, name) for name in expected} == expected
    assert all(_get(from_file, name) != value for name, value in expected.items())
    section = next(name.split(".")[0] for name in expected if "." in name)
    sibling = f"{section}.{SIBLING[section]}"
    assert _get(settings, sibling) == _get(from_file, sibling)  # the nested override merged with the file


def test_the_caller_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vault.toml"
    path.write_text('store = "file:///srv/store"\n[server]\nhost = "10.0.0.1"\nport = 8701\n')
    monkeypatch.setenv("TCLEARN_VAULT_SERVER__PORT", "9000")
    monkeypatch.setenv("TCLEARN_VAULT_DATABASE", "sqlite:///env.db")

    settings = load_settings(VaultSettings, path, {"server": {"port": 1234}, "database": None, "max_bytes": 5})

    assert settings.server.port == 1234 and settings.server.host == "10.0.0.1"
    assert settings.database == "sqlite:///env.db" and settings.store == "file:///srv/store"
    assert settings.max_bytes == 5


def test_defaults_stand_without_a_file_and_nested_defaults_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCLEARN_SUPERVISOR_SERVER__HOST", "0.0.0.0")

    settings = load_settings(SupervisorSettings)

    assert settings.server.host == "0.0.0.0" and settings.server.port == 8710  # the field's own default port


@pytest.mark.parametrize(
    ("model", "toml", "env", "message"),
    [
        (VaultSettings, "max_bytes = 0\n" + VAULT, {}, r"vault\.toml: max_bytes"),
        (VaultSettings, "colour = 1\n", {}, r"vault\.toml: colour: Extra inputs"),
        (VaultSettings, '[server]\nport = "x"\n', {}, r"vault\.toml: server\.port"),
        (MemberSettings, SITE.replace("epochs = 3", "epochs = 0"), {}, r"vault\.toml: training\.epochs"),
        (NodeSettings, SITE, {"TCLEARN_NODE_SERVER__PORT": "eighty"}, r"port: .*by TCLEARN_NODE_SERVER__PORT"),
        (SupervisorSettings, "key_file = \n", {}, r"vault\.toml is not valid"),
    ],
)
def test_a_bad_field_is_one_config_error_naming_the_file_and_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: type[ServiceSettings],
    toml: str,
    env: dict[str, str],
    message: str,
) -> None:
    path = tmp_path / "vault.toml"  # one name for every case: the message must carry it
    path.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=message):
        load_settings(model, path)


def test_a_missing_file_is_not_found_and_the_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vault.toml"
    path.write_text(VAULT)
    monkeypatch.setenv("TCLEARN_VAULT_CONFIG", str(path))

    settings = settings_from_env(VaultSettings)

    assert settings.store == "file:///srv/store" and settings.server.port == 8701
    with pytest.raises(NotFoundError, match=r"nope\.toml"):
        load_settings(VaultSettings, tmp_path / "nope.toml")


def test_a_site_file_keeps_its_relative_paths_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "member.toml"
    path.write_text(SITE)
    monkeypatch.setenv("TCLEARN_MEMBER_DATA", "other-data")

    site = load_site_config(path, MemberSettings)

    assert site.data == tmp_path / "other-data" and site.global_test == tmp_path / "global"
    assert site.training.epochs == 3 and site.training.batch_size == COALITION_TRAINING.batch_size


@pytest.mark.parametrize(
    "settings",
    [
        VaultSettings.model_validate({"store": "memory://x", "public_reads": True, "server": {"port": 1}}),
        AuditorSettings.model_validate({"deployment": "d.json", "vault": "/v", "confirmations": 2}),
        SiteConfig.model_validate(
            {
                "name": "h",
                "deployment": "../deployment.json",
                "vault_url": "http://v",
                "dev_account": 2,
                "data": "d",
                "global_test": "g",
                "model": {"options": {"channels": [8, 16]}},
                "training": {"epochs": 2, "lr": 0.5},
                "server": {"port": 9},
            }
        ),
    ],
    ids=["vault", "auditor", "site"],
)
def test_what_dump_settings_writes_loads_back(tmp_path: Path, settings: ServiceSettings) -> None:
    path = dump_settings(settings, tmp_path / "service.toml", header="written by a test\nsecond line")

    loaded = load_settings(type(settings), path)

    assert path.read_text().startswith("# written by a test\n# second line\n")
    assert loaded == settings


def test_the_files_coalition_up_writes_load_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCLEARN_SITE_NAME", "not-from-the-environment")  # writing reads no environment
    settings = up.UpSettings(members=3, byzantine=1, out=tmp_path)
    urls = {"vault": "http://127.0.0.1:8701", "supervisor": "http://127.0.0.1:8711"}
    training = TrainingSection(epochs=settings.epochs, seed=settings.seed)
    vault = {"store": "file:///srv/store", "public_reads": True, "server": {"host": "127.0.0.1", "port": 8701}}

    port = up._site_file(tmp_path / "sites" / "member.toml", settings, 2, urls, training)
    vault_file = up._config(tmp_path / "vault" / "vault.toml", VaultSettings, vault)

    site = load_site_config(tmp_path / "sites" / "member.toml", MemberSettings)
    assert site.name == "hospital-3" and site.dev_account == 3 and site.attack is Attack.SIGN_FLIP
    assert site.server.port == port and site.training == training and site.vault_url == urls["vault"]
    assert site.deployment == tmp_path / "sites" / ".." / "deployment.json"
    assert load_settings(VaultSettings, vault_file) == VaultSettings.model_validate(vault)
    assert vault_file.read_text().startswith("# Written by `tclearn coalition up`")
