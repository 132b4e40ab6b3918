"""A small coalition on a real Anvil node, served by a real vault service over HTTP, with one site file per
hospital: what the node daemon tests run against."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.vault.app import create_app
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import save_deployment
from tclearn.learning.models import ModelConfig
from tclearn.learning.synth import GLOBAL, hospital_name, synth_coalition
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.directory import chain_directory
from tclearn.ledger.localchain import free_port
from tclearn.site.config import load_site_config
from tclearn.site.open import Site, open_site
from tclearn.state.db import Database
from tclearn.types import Variant
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.keys import generate_key, save_key
from tclearn.vault.store import FsspecStore
from tests.vault.conftest import serve_app as serve

KEY_PASSWORD = "node-test"
MODEL = ModelConfig(arch="unet", options={"channels": [4, 8], "strides": [2], "num_res_units": 0})  # type: ignore[arg-type]
# every increment is approved (tolerance 1): the tests are about who votes when, not about model quality
SITE_TAIL = """
poll_interval = 0.2
keeper_interval = 1.0
[model]
arch = "unet"
options = { channels = [4, 8], strides = [2], num_res_units = 0 }
[training]
epochs = 1
batch_size = 4
min_batch_size = 4
[policy]
tolerance_global = 1.0
tolerance_local = 1.0
"""


def env() -> dict[str, str]:
    """What a child process needs: the key password, one torch thread (the machine is shared), this checkout."""
    return {
        **os.environ,
        "TCLEARN_KEY_PASSWORD": KEY_PASSWORD,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tclearn.cli.app", *args]


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Until `url` answers 200 (or the process dies, showing its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout} s:\n{log.read_text()}")


@dataclass
class NodeCoalition:
    """A deployed coalition: its folder, client, vault URL and one site file per hospital."""

    folder: Path
    client: LedgerClient
    vault_url: str
    sites: list[Path]  # site file of hospital-1 .. hospital-N (dev accounts 1 .. N)

    def open(self, index: int) -> Site:
        return open_site(load_site_config(self.sites[index]))

    def address(self, index: int) -> str:
        return str(self.client.chain.dev_keys[index + 1].address)

    def port(self, index: int) -> int:
        return load_site_config(self.sites[index]).server.port


@contextmanager
def node_coalition(chain: Chain, folder: Path, variant: Variant, hospitals: int = 4) -> Iterator[NodeCoalition]:
    """Data, keys, genesis, contract, members, site files and a vault service (a thread of this process, as in
    the vault's own tests); the vault stops on exit."""
    os.environ["TCLEARN_KEY_PASSWORD"] = KEY_PASSWORD  # open_site reads it in this process too
    synth_coalition(folder / "data", hospitals=hospitals, train=8, test=4, global_size=8, size=32)
    admin, accounts = chain.dev_keys[0], chain.dev_keys[1 : hospitals + 1]
    keys: dict[str, bytes] = {}
    for i, account in enumerate(accounts):
        keys[account.address] = save_key(folder / f"{hospital_name(i)}.key", generate_key(), KEY_PASSWORD.encode())
    store = FsspecStore(f"file://{folder / 'vault' / 'store'}")
    founders = [Founder(a.address, keys[a.address], hospital_name(i)) for i, a in enumerate(accounts)]
    genesis = genesis_weights(MODEL, seed=0)
    policy = AcceptancePolicy(1.0, 1.0, min_batch_size=4, max_drift=1.0, tolerance_stratum=1.0)  # as the sites expect
    client, tx = found(
        chain, admin, store, variant, genesis, founders, policy=policy, general_timeout=60, voting_timeout=600
    )
    deployment = folder / "deployment.json"
    save_deployment(deployment_of(client, tx.block_number, tx.tx_hash, variant.name), deployment)
    vault_db = Database(f"sqlite:///{folder / 'vault' / 'access.db'}")
    vault_store, audience = FsspecStore(f"file://{folder / 'vault' / 'store'}"), CoalitionId.of_client(client)
    with serve(
        lambda url: create_app(vault_store, vault_db, chain_directory(deployment), Audience.of(url, audience))
    ) as url:
        yield NodeCoalition(folder, client, url, [_site_file(folder, i, url) for i in range(hospitals)])
    vault_db.dispose()


def _site_file(folder: Path, index: int, vault_url: str) -> Path:
    name = hospital_name(index)
    lines = [
        f'name = "{name}"',
        'deployment = "deployment.json"',
        f'vault_url = "{vault_url}"',
        f"dev_account = {index + 1}",
        f'encryption_key = "{name}.key"',
        f'data = "data/{name}"',
        f'global_test = "data/{GLOBAL}"',
        f'state = "sqlite:///state/{name}.db"',
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + SITE_TAIL + f"[server]\nport = {free_port()}\n")
    return path
