"""A real coalition for the member service: Anvil, a live vault service, a genesis model, sites for three hospitals.

`deploy_sites` deploys the Coalition contract on the session's Anvil with a real genesis model in a vault
served over HTTP on loopback (members come from the chain), its three hospitals the founders, and writes a
member.toml for each; the sites are opened in-process like `tclearn member serve` opens them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from services.member.app import create_app
from services.vault.app import create_app as create_vault
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import settle
from tclearn.config import save_deployment
from tclearn.learning.models import ModelConfig
from tclearn.learning.synth import synth_coalition
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.localchain import LocalNode
from tclearn.site.config import load_site_config
from tclearn.site.open import Site, open_site
from tclearn.state.db import Database
from tclearn.types import ModelState, Variant
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.envelope import public_bytes
from tclearn.vault.keys import PASSWORD_ENV, save_key
from tclearn.vault.store import FsspecStore
from tests.conftest import node_chain
from tests.services.coalition_run import Auditor, CoalitionRun, auditor_parts, coalition_run  # noqa: F401 - fixtures
from tests.vault.conftest import serve_app

HOSPITALS = 3
KEY_PASSWORD = "member-api-test"
OPERATOR_TOKEN = "operator-token-0123456789"
# The coalition's policy (the sites pin its tolerances): every honest increment passes, the tests are about the
# services, not the model.
LENIENT = AcceptancePolicy(1.0, 1.0, min_batch_size=4, max_drift=1.0, tolerance_stratum=1.0)


@dataclass
class Deployed:
    folder: Path
    client: LedgerClient
    deployer: LocalAccount  # paid for the deployment; no member
    accounts: list[LocalAccount]  # the hospitals' chain accounts, hospital-1 first
    outsider: LocalAccount  # funded, never registered
    vault_url: str
    variant: Variant
    configs: list[Path]  # member.toml of each hospital
    genesis: dict[str, torch.Tensor]

    def open(self, index: int) -> Site:
        return open_site(load_site_config(self.configs[index]))


def _site_file(folder: Path, index: int, vault_url: str, variant: Variant, extra: tuple[str, ...] = ()) -> Path:
    name = f"hospital-{index + 1}"
    lines = [
        f'name = "{name}"',
        'deployment = "deployment.json"',
        f'vault_url = "{vault_url}"',
        f"dev_account = {index + 1}",
        f'data = "data/{name}"',
        'global_test = "data/global"',
        f'state = "sqlite:///state/{name}.db"',
        *([f'encryption_key = "keys/{name}.key"'] if variant is Variant.B else []),
        "[training]",
        "epochs = 1",
        "batch_size = 4",
        "min_batch_size = 4",
        "[policy]",  # what the site expects of the coalition's policy (LENIENT)
        "tolerance_global = 1.0",
        "tolerance_local = 1.0",
        *extra,
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def deploy_sites(
    node: LocalNode,
    folder: Path,
    variant: Variant,
    policy: AcceptancePolicy = LENIENT,
    site_lines: dict[int, tuple[str, ...]] | None = None,
) -> Iterator[Deployed]:
    """A deployed coalition of three hospitals whose genesis is a real model in a live vault, founded with `policy`;
    `site_lines` adds lines at the end of a hospital's member.toml (by index)."""
    synth_coalition(folder / "data", hospitals=HOSPITALS, train=8, test=4, global_size=8, size=32, seed=0)
    chain = node_chain(node)
    deployer, accounts, outsider = chain.dev_keys[0], chain.dev_keys[1 : HOSPITALS + 1], chain.dev_keys[HOSPITALS + 1]
    keys = [X25519PrivateKey.generate() for _ in accounts]
    for index, key in enumerate(keys):
        save_key(folder / "keys" / f"hospital-{index + 1}.key", key, KEY_PASSWORD.encode())
    store = FsspecStore(f"file://{folder}/vault")
    genesis = genesis_weights(ModelConfig(arch="unet"), seed=0)  # type: ignore[arg-type]
    founders = [
        Founder(a.address, public_bytes(k), f"hospital-{i + 1}")
        for i, (a, k) in enumerate(zip(accounts, keys, strict=True))
    ]
    client, tx = found(chain, deployer, store, variant, genesis, founders, policy=policy)
    save_deployment(deployment_of(client, tx.block_number, tx.tx_hash, variant.name), folder / "deployment.json")
    db = Database(f"sqlite:///{folder}/vault-access.db")
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        env.setenv(PASSWORD_ENV, KEY_PASSWORD)
        directory, ours = ChainDirectory(client, ttl=0.2), CoalitionId.of_client(client)
        vault_url = stack.enter_context(
            serve_app(lambda url: create_vault(store, db, directory, Audience.of(url, ours)))
        )
        extra = site_lines or {}
        configs = [_site_file(folder, i, vault_url, variant, extra.get(i, ())) for i in range(HOSPITALS)]
        yield Deployed(folder, client, deployer, accounts, outsider, vault_url, variant, configs, genesis)
    db.dispose()


def member_client(site: Site, **options: object) -> TestClient:
    """The member API of `site` over Starlette's test transport (HTTP semantics, same process)."""
    app = create_app(site, operator_token=OPERATOR_TOKEN, **options)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def operator_headers(token: str = OPERATOR_TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def wait_job(api: TestClient, job_id: str, headers: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """The job once it has ended (done, failed or cancelled), polled as its owner (default: the operator)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}", headers=headers or operator_headers()).json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


@dataclass
class Coalition3:
    """A variant A coalition of three sites whose model 1 is committed; hospital-1 serves the member API."""

    deployed: Deployed
    sites: list[Site]
    committed: int

    @property
    def contexts(self) -> list[tuple[Coalition, Hospital]]:
        return [(s.coalition, s.hospital) for s in self.sites]


@pytest.fixture(scope="package")
def coalition_a(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coalition3]:
    torch.set_num_threads(1)
    with deploy_sites(anvil_node, tmp_path_factory.mktemp("member-a"), Variant.A) as deployed:
        sites = [deployed.open(i) for i in range(HOSPITALS)]
        proposal = propose(sites[0].coalition, sites[0].hospital)
        contexts = [(s.coalition, s.hospital) for s in sites]
        assert settle(contexts, proposal.submission.model_id) is ModelState.COMMITTED
        yield Coalition3(deployed, sites, proposal.submission.model_id)
        for site in sites:
            site.close()
