"""`tclearn coalition up`: a whole coalition on this machine, one process per role, on loopback only.

It founds the coalition (data, keys, genesis, contract, members), then starts the chain node (unless a URL is
given), the vault, one member API and one node daemon per hospital, and the auditor — each the ordinary
`tclearn` command a hospital would run, with its own config, keys, data folder, state database and port. Each
config is the service's settings model written as TOML (`dump_settings`), read back by its `--config`. In
variant C the data are feature tables and the supervisor service (`tclearn supervisor serve`, its encrypted
secret key only in `supervisor/`) is one more process, ready before the sites start.
Rounds are driven through the member APIs, exactly as a hospital's staff would (`POST /jobs/train`), and
decided by the node daemons. Everything lives under one folder; `run.json` there lists the processes
(`processes.py`), so `tclearn coalition down` can stop a detached run.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import httpx
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.audit.config import AuditorSettings
from tclearn.audit.token import token_digest
from tclearn.coalition.build import Tables, table_columns
from tclearn.coalition.ckks import SiteRows, encrypted_genesis, supervisor_founder
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import CandidateRow
from tclearn.config import ServiceSettings, dump_settings, save_deployment
from tclearn.errors import ConfigError, NodeError
from tclearn.he.client import LocalSupervisorClient, SupervisorClient
from tclearn.he.config import SupervisorSettings
from tclearn.he.context import HEContext
from tclearn.he.keys import save_secret
from tclearn.he.supervisor import Supervisor
from tclearn.learning.defaults import COALITION_TRAINING, SIMULATION_LOSS, UP_EPOCHS
from tclearn.learning.models import ModelConfig
from tclearn.learning.synth import GLOBAL, hospital_name, synth_coalition
from tclearn.learning.tables import read_table
from tclearn.learning.tabular import GLOBAL_CSV, LABEL, synth_tabular
from tclearn.learning.watermark import new_key
from tclearn.ledger.accounts import DEV_CHAIN_IDS, dev_accounts
from tclearn.ledger.chain import Chain, connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.localchain import NODES, free_port
from tclearn.simulation.processes import RUN_FILE, Run, Service
from tclearn.simulation.run import RunSpec, outcome
from tclearn.site.config import ModelSection, SiteConfig, TrainingSection
from tclearn.state.db import Database
from tclearn.types import ModelState, Variant
from tclearn.vault.config import VaultSettings
from tclearn.vault.keys import PASSWORD_ENV as KEY_PASSWORD_ENV
from tclearn.vault.keys import save_key
from tclearn.vault.store import FsspecStore

TOKEN_ENV = "TCLEARN_OPERATOR_TOKEN"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SUPERVISOR_KEY = "ckks.key"  # in the supervisor's folder, encrypted with the run's key password
FINAL = {ModelState.COMMITTED, ModelState.REJECTED, ModelState.EXPIRED, ModelState.STALE}
HEADER = 'Written by `tclearn coalition up`; the fields: docs/deploy.md, "Settings".'


@dataclass(frozen=True)
class UpSettings(RunSpec):
    """`coalition up`'s run: every role its own process on this machine."""

    rounds: int = 4
    epochs: int = UP_EPOCHS
    chain: str = "anvil"  # anvil, ganache or a loopback JSON-RPC URL
    out: Path = Path("out/coalition")
    round_timeout: float = 600.0
    policy: AcceptancePolicy | None = None  # the policy to found with (`--policy`); None: the defaults
    watermark: bool = False  # found with a coalition watermark (a key drawn for the genesis; variants A and B)
    MIN_MEMBERS: ClassVar[tuple[int, str]] = (3, "a proposer and two validators")
    MIN_ROUNDS: ClassVar[int] = 0

    def founding_policy(self) -> AcceptancePolicy:
        return self.policy or AcceptancePolicy(min_batch_size=COALITION_TRAINING.min_batch_size)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.founding_policy().min_batch_size > COALITION_TRAINING.batch_size:
            raise ConfigError(
                f"the policy's min_batch_size {self.founding_policy().min_batch_size} is above the sites' batch "
                f"size {COALITION_TRAINING.batch_size}: the general would refuse every candidate"
            )
        if self.watermark and self.variant is Variant.C:
            raise ConfigError("--watermark is for variants A and B: variant C's weights are encrypted")
        if self.chain not in NODES:
            host = urlparse(self.chain).hostname
            if not self.chain.startswith("http://") or host not in LOOPBACK:
                raise ConfigError(
                    f"--chain must be {', '.join(NODES)} or an http:// URL on loopback, got {self.chain!r}"
                )


def _server(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    return {"host": parsed.hostname, "port": parsed.port}


# ---- founding and configuration ---------------------------------------------------------------------------


def _config(path: Path, model: type[ServiceSettings], values: dict[str, Any]) -> Path:
    """Writes `values`, checked as the service's settings, as its TOML file."""
    return dump_settings(model.model_validate(values), path, header=HEADER)


def _serve(run: Run, env: dict[str, str], service: str, config: Path, url: str) -> None:
    """Starts `tclearn SERVICE serve --config CONFIG`, answering at `url`."""
    run.start(Service(service, [service, "serve", "--config", str(config)], url), env)


def _site_file(path: Path, settings: UpSettings, index: int, urls: dict[str, str], training: TrainingSection) -> int:
    """Writes one of a hospital's service configs (member.toml, node.toml); returns the port it listens on."""
    name, port = hospital_name(index), free_port()
    encrypted = settings.variant is Variant.C
    site = {
        "name": name,
        "deployment": "../deployment.json",
        "vault_url": urls["vault"],
        **({"supervisor_url": urls["supervisor"]} if encrypted else {}),
        "dev_account": index + 1,
        "encryption_key": f"{name}.x25519.key",
        "data": f"../../data/{name}",
        "global_test": f"../../data/{GLOBAL_CSV if encrypted else GLOBAL}",
        "state": f"sqlite:///{path.stem}.db",
        "attack": settings.attack_at(index),
        "poll_interval": 0.5,
        "keeper_interval": 5.0,
        "training": training.model_dump(),
        "server": {"host": "127.0.0.1", "port": port},
    }
    _config(path, SiteConfig, site)
    return port


def _encrypted_genesis(
    settings: UpSettings, store: FsspecStore, password: bytes, supervisor: str
) -> tuple[str, Founder]:
    """Variant C: feature tables, the supervisor's keys (the secret part only in `supervisor/`, encrypted at
    rest), the public context and the encrypted genesis in the vault; returns the genesis hash and the
    supervisor as a founder."""
    out = settings.out
    synth_tabular(out / "data", hospitals=settings.members, seed=settings.seed)
    global_test = Tables(LABEL).global_test(out / "data" / GLOBAL_CSV)  # checked as the sites will check it
    columns = table_columns(global_test)
    files = tuple(out / "data" / hospital_name(i) / "train.csv" for i in range(settings.members))
    rows = tuple(read_table(path, LABEL, columns).x for path in files)
    sites = SiteRows(columns, rows, names=tuple(map(str, files)))
    (out / "supervisor").mkdir(parents=True, exist_ok=True)
    log = Database(f"sqlite:///{(out / 'supervisor' / 'log.db').resolve()}")  # the service's log, started later

    def founding(secret: HEContext) -> SupervisorClient:
        """The supervisor at founding, in this process; its scaling round's requests go to the service's log."""
        return LocalSupervisorClient(Supervisor(secret, log), "founding")

    genesis = encrypted_genesis(store, global_test, settings.seed, sites, founding)
    save_secret(out / "supervisor" / SUPERVISOR_KEY, genesis.secret, password)
    return genesis.model_hash, supervisor_founder(supervisor, genesis.context)


def prepare(
    settings: UpSettings, chain: Chain, urls: dict[str, str], password: bytes
) -> tuple[LedgerClient, list[tuple[Path, int]]]:
    """Data, keys (encrypted under `password`), genesis, contract and members; each hospital's service
    configs and their ports."""
    out = settings.out
    store = FsspecStore(f"file://{(out / 'vault' / 'store').resolve()}")
    accounts = dev_accounts(settings.members + 2)  # the admin, the hospitals, the supervisor (variant C)
    founders, supervisors = [], []
    genesis: dict[str, torch.Tensor] | str
    if settings.variant is Variant.C:
        genesis, supervisor = _encrypted_genesis(settings, store, password, accounts[settings.members + 1].address)
        supervisors.append(supervisor)
    else:
        synth_coalition(out / "data", hospitals=settings.members, seed=settings.seed)
        model = ModelConfig(arch=ModelSection().arch)  # type: ignore[arg-type]  # the site files' default model
        genesis = genesis_weights(model, settings.seed)
    training = TrainingSection(
        epochs=settings.epochs,
        seed=settings.seed,
        loss=SIMULATION_LOSS,
        min_batch_size=settings.founding_policy().min_batch_size,
    )
    sites = []
    for i in range(settings.members):
        name = hospital_name(i)
        site = out / "sites" / name
        site.mkdir(parents=True)
        public = save_key(site / f"{name}.x25519.key", X25519PrivateKey.generate(), password)
        founders.append(Founder(accounts[i + 1].address, public, name))
        for role in ("node", "member"):
            config = site / f"{role}.toml"
            sites.append((config, _site_file(config, settings, i, urls, training)))
    policy = settings.founding_policy()  # the sites read it from the chain
    key = new_key(genesis, "coalition") if settings.watermark and not isinstance(genesis, str) else None
    client, deployed = found(
        chain, accounts[0], store, settings.variant, genesis, [*founders, *supervisors], policy=policy, watermark=key
    )
    save_deployment(
        deployment_of(client, deployed.block_number, deployed.tx_hash, settings.variant.name),
        out / "sites" / "deployment.json",
    )
    return client, sites


@contextmanager
def started(
    settings: UpSettings, on_step: Callable[[str], None] = lambda _m: None
) -> Iterator[tuple[Run, LedgerClient]]:
    """Founds the coalition and starts every process; stops them all when the block exits, unless `detach`
    was called."""
    out = settings.out
    if (out / RUN_FILE).exists():
        raise ConfigError(f"{out / RUN_FILE} exists: a coalition may still run there; `tclearn coalition down`")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out.resolve(), token=secrets.token_urlsafe(24))
    env = {KEY_PASSWORD_ENV: os.environ.get(KEY_PASSWORD_ENV) or secrets.token_urlsafe(16), TOKEN_ENV: run.token}
    try:
        if settings.chain in NODES:
            port = free_port()
            run.chain_url = f"http://127.0.0.1:{port}"
            args = ["chain", "up", "--node", settings.chain, "--port", str(port)]
            args += ["--keys", "chain/dev-keys.json", "--accounts", str(settings.members + 2)]
            run.start(Service("chain", args, run.chain_url), env)
            on_step(f"starting {settings.chain} at {run.chain_url}")
            run.wait_ready(timeout=120)
        else:
            run.chain_url = settings.chain
        chain = connect(run.chain_url)
        if chain.chain_id not in DEV_CHAIN_IDS:
            raise ConfigError(f"chain {chain.chain_id} at {run.chain_url} is not a local dev chain (Anvil or Ganache)")
        urls = {name: f"http://127.0.0.1:{free_port()}" for name in ("vault", "supervisor")}
        on_step("founding the coalition: data, keys, genesis model, contract, members")
        client, sites = prepare(settings, chain, urls, env[KEY_PASSWORD_ENV].encode())
        deployment = str(out.resolve() / "sites" / "deployment.json")
        store, access = (out / "vault").resolve(), f"sqlite:///{(out / 'vault' / 'access.db').resolve()}"
        vault = {
            "store": f"file://{store / 'store'}",
            "database": access,
            "deployment": deployment,
            "public_reads": settings.variant is Variant.A,
            "server": _server(urls["vault"]),
        }
        _serve(run, env, "vault", _config(store / "vault.toml", VaultSettings, vault), urls["vault"])
        if settings.variant is Variant.C:
            folder = out.resolve() / "supervisor"
            supervisor = {
                "key_file": str(folder / SUPERVISOR_KEY),
                "database": f"sqlite:///{folder / 'log.db'}",
                "deployment": deployment,
                "requests_per_minute": 10000,
                "server": _server(urls["supervisor"]),
            }
            supervisor_config = _config(folder / "supervisor.toml", SupervisorSettings, supervisor)
            _serve(run, env, "supervisor", supervisor_config, urls["supervisor"])
            on_step("starting the vault and the supervisor (each site fetches the public context at start)")
            run.wait_ready()
        for config, port in sites:
            role = config.stem
            args = ["node", "run"] if role == "node" else ["member", "serve"]
            service = Service(
                f"{role}-{config.parent.name}", [*args, "--config", str(config)], f"http://127.0.0.1:{port}"
            )
            run.start(service, env)
        auditor_url = f"http://127.0.0.1:{free_port()}"
        auditor = {
            "deployment": deployment,
            "vault": f"file://{store / 'store'}",
            "access_db": access,
            "state": f"sqlite:///{out.resolve() / 'auditor.db'}",
            "token_sha256": token_digest(run.token),  # the run's one token: operator calls and the dashboard
            "server": _server(auditor_url),
        }
        _serve(run, env, "auditor", _config(out.resolve() / "auditor.toml", AuditorSettings, auditor), auditor_url)
        on_step(f"starting {len(run.services)} processes (each loads torch and MONAI: this takes a while)")
        run.wait_ready()
        yield run, client
    finally:
        if run._procs:
            run.stop()


# ---- driving rounds through the member APIs --------------------------------------------------------------


def _member_call(run: Run, hospital: str, method: str, path: str) -> dict[str, Any]:
    url = run.url(f"member-{hospital}") + path
    response = httpx.request(method, url, headers={"Authorization": f"Bearer {run.token}"}, timeout=30.0)
    if response.status_code >= 400:
        raise NodeError(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    document: dict[str, Any] = response.json()
    return document


def drive_round(
    run: Run, client: LedgerClient, settings: UpSettings, index: int, on_update: Callable[[CandidateRow], None]
) -> CandidateRow:
    """One round: the turn's hospital trains through its member API; the node daemons decide the candidate."""
    member = index % settings.members
    name = hospital_name(member)
    started_at = time.monotonic()
    job = _member_call(run, name, "POST", "/jobs/train")
    attack = settings.attack_at(member)
    row = CandidateRow(
        None, name, attack.value != "none", attack.value, "", "training", round=index + 1, job=str(job["id"])
    )
    on_update(row)
    deadline = started_at + settings.round_timeout
    while job["state"] not in ("done", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise NodeError(f"round {index + 1}: {name}'s training job {job['id']} did not finish in time")
        time.sleep(0.5)
        job = _member_call(run, name, "GET", f"/jobs/{job['id']}")
    if job["state"] != "done" or job["model_id"] is None:
        row.state, row.error = job["state"], job.get("error")
        on_update(row)
        return row
    row.id, row.state = int(job["model_id"]), "submitted"
    names = {str(a.address): hospital_name(i) for i, a in enumerate(dev_accounts(settings.members + 1)[1:])}
    while True:
        record = client.get_model(row.id, with_uri=False)
        row.general = names.get(record.general, record.general)
        row.approvals, row.rejections = record.approvals, record.rejections
        row.state = record.state.name.lower()
        row.seconds = round(time.monotonic() - started_at, 1)
        on_update(row)
        if record.state in FINAL:
            return row
        if time.monotonic() > deadline:
            raise NodeError(f"round {index + 1}: candidate {row.id} was not decided in time ({row.state})")
        time.sleep(0.5)


def summary(rows: list[CandidateRow], client: LedgerClient, run: Run) -> dict[str, Any]:
    return {
        "chain": run.chain_url,
        "contract": client.address,
        "head": client.head(),
        "rounds": [r.to_json() for r in rows],
        **outcome(rows),
        "dashboard": run.url("auditor") + f"/#token={run.token}",  # the fragment stays in the browser
        "auditor": run.url("auditor"),
        "members": {s.name: s.url for s in run.services if s.name.startswith("member-")},
        "vault": run.url("vault"),
        "supervisor": next((s.url for s in run.services if s.name == "supervisor"), None),
        "folder": str(run.folder),
    }
