"""A hospital's site config (`member.toml` / `node.toml`) and the coalition opened from it, on a real Anvil."""

from __future__ import annotations

from pathlib import Path

import pytest

from tclearn.coalition.site import load_site_config, open_site
from tclearn.errors import ConfigError, NotFoundError
from tclearn.learning.synth import synth_coalition
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.node import LocalNode
from tclearn.types import Variant
from tclearn.vault.http import HttpStore
from tests.test_cli import _config, invoke


def _site(folder: Path, **extra: str) -> Path:
    lines = [
        'name = "hospital-1"',
        'deployment = "deployment.json"',
        'vault_url = "http://127.0.0.1:9"',
        'data = "data/hospital-1"',
        'global_test = "data/global"',
        'state = "sqlite:///state/site.db"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    path = folder / "member.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def deployed(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    cfg = _config(folder, anvil_node.url, variant='"A"')
    cfg.write_text(cfg.read_text().replace('variant = "B"\n', "", 1))
    invoke("coalition", "deploy", "--config", str(cfg), "--out", str(folder / "deployment.json"), "--dev-account", "0")
    synth_coalition(folder / "data", hospitals=2, train=4, test=2, global_size=4, size=32)
    return folder


def test_relative_paths_are_taken_from_the_file_folder(deployed: Path) -> None:
    config = load_site_config(_site(deployed, dev_account="1"))
    assert config.data == deployed / "data" / "hospital-1"
    assert config.deployment == deployed / "deployment.json"
    assert config.state == f"sqlite:///{deployed / 'state' / 'site.db'}"


def test_open_site_sees_the_coalition_as_its_hospital(deployed: Path) -> None:
    site = open_site(load_site_config(_site(deployed, dev_account="1")))
    try:
        assert site.coalition.variant is Variant.A
        assert site.hospital.address == dev_accounts(2)[1].address
        assert site.coalition.hospitals == [site.hospital]
        assert len(site.hospital.train) == 4 and len(site.coalition.global_test) == 4
        assert isinstance(site.coalition.store, HttpStore)
        assert site.client.get_member(site.hospital.address) is not None
    finally:
        site.close()


def test_bad_site_files_are_named(deployed: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of keystore"):
        load_site_config(_site(deployed))
    with pytest.raises(ConfigError, match=r"member\.toml: training\.batch_size"):
        load_site_config(_site(deployed, dev_account="1", **{"training": "{ batch_size = 0 }"}))
    with pytest.raises(ConfigError, match="colour"):
        load_site_config(_site(deployed, dev_account="1", colour='"red"'))
    with pytest.raises(NotFoundError, match="hospital-9"):
        site = _site(deployed, dev_account="1")
        site.write_text(site.read_text().replace("hospital-1", "hospital-9"))
        open_site(load_site_config(site))
