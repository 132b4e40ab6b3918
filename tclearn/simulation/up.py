"""`tclearn coalition up`: a whole coalition on this machine, one process per role, on loopback only.

It founds the coalition (data, keys, genesis, contract, members), then starts the chain node (unless a URL is
given), the vault, one member API and one node daemon per hospital, and the auditor — each the ordinary
`tclearn` command a hospital would run, with its own config, keys, data folder, state database and port. In
variant C the data are feature tables and the supervisor service (`tclearn supervisor serve`, its encrypted
secret key only in `supervisor/`) is one more process, ready before the sites start.
Rounds are driven through the member APIs, exactly as a hospital's staff would (`POST /jobs/train`), and
decided by the node daemons. Everything lives under one folder; `run.json` there lists the processes, so
`tclearn coalition down` can stop a detached run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import httpx
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.coalition.build import Tables
from tclearn.coalition.ckks import encrypted_genesis, supervisor_founder
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.config import save_deployment
from tclearn.errors import ConfigError, NodeError
from tclearn.he.keys import save_secret
from tclearn.he.model import ModelSpec
from tclearn.learning.attacks import Attack
from tclearn.learning.models import ModelConfig
from tclearn.learning.synth import GLOBAL, hospital_name, synth_coalition
from tclearn.learning.tabular import GLOBAL_CSV, LABEL, synth_tabular
from tclearn.ledger.accounts import DEV_CHAIN_IDS, dev_accounts
from tclearn.ledger.chain import Chain, connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.localchain import NODES, free_port
from tclearn.site.config import ModelSection, TrainingSection
from tclearn.types import ModelState, Variant
from tclearn.vault.keys import PASSWORD_ENV as KEY_PASSWORD_ENV
from tclearn.vault.keys import save_key
from tclearn.vault.store import FsspecStore

RUN_FILE = "run.json"
TOKEN_ENV = "TCLEARN_OPERATOR_TOKEN"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SUPERVISOR_KEY = "ckks.key"  # in the supervisor's folder, encrypted with the run's key password
FINAL = {ModelState.COMMITTED, ModelState.REJECTED, ModelState.EXPIRED, ModelState.STALE}


@dataclass(frozen=True)
class UpSettings:
    members: int = 4
    byzantine: int = 1
    attack: Attack = Attack.SIGN_FLIP
    chain: str = "anvil"  # anvil, ganache or a loopback JSON-RPC URL
    variant: Variant = Variant.B
    rounds: int = 4
    epochs: int = 4
    seed: int = 0
    out: Path = Path("out/coalition")
    round_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.members < 3:
            raise ConfigError(f"--members must be at least 3 (a proposer and two validators), got {self.members}")
        if not 0 <= self.byzantine < self.members:
            raise ConfigError(f"--byzantine must be between 0 and members - 1, got {self.byzantine}")
        if self.rounds < 0:
            raise ConfigError(f"--rounds must be >= 0, got {self.rounds}")
        object.__setattr__(self, "attack", Attack(self.attack))
        object.__setattr__(self, "variant", Variant.parse(self.variant))
        if self.chain not in NODES:
            host = urlparse(self.chain).hostname
            if not self.chain.startswith("http://") or host not in LOOPBACK:
                raise ConfigError(
                    f"--chain must be {', '.join(NODES)} or an http:// URL on loopback, got {self.chain!r}"
                )

    def byzantine_at(self, index: int) -> bool:
        return index >= self.members - self.byzantine


@dataclass
class Service:
    name: str
    args: list[str]
    url: str | None  # what answers /health, if anything
    pid: int = 0


@dataclass
class Run:
    """A coalition started by `up`: its folder, processes and endpoints (saved as `run.json`)."""

    folder: Path
    chain_url: str = ""
    token: str = ""
    services: list[Service] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def url(self, name: str) -> str:
        found = next((s.url for s in self.services if s.name == name), None)
        if found is None:
            raise KeyError(name)
        return found

    def save(self) -> None:
        document = {
            "chain": self.chain_url,
            "operator_token": self.token,
            "services": [{"name": s.name, "pid": s.pid, "url": s.url, "args": s.args} for s in self.services],
        }
        path = self.folder / RUN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.chmod(0o600)  # the operator token of a local dev run
        tmp.replace(path)

    def start(self, service: Service, env: dict[str, str]) -> None:
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        log: IO[bytes] = open(logs / f"{service.name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        proc = subprocess.Popen(
            [sys.executable, "-m", "tclearn.cli.app", *service.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # Ctrl-C reaches `up`, which stops its children in order
            cwd=self.folder,
        )
        log.close()
        service.pid = proc.pid
        self.services.append(service)
        self._procs.append(proc)
        self.save()

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until every service answers `/health` (the chain: JSON-RPC); names the one that died or hung."""
        deadline = time.monotonic() + timeout
        for service, proc in zip(self.services, self._procs, strict=True):
            while not _healthy(service):
                if proc.poll() is not None:
                    raise NodeError(f"{service.name} exited with code {proc.returncode}; {_tail(self.folder, service)}")
                if time.monotonic() > deadline:
                    raise NodeError(
                        f"{service.name} did not answer within {timeout:.0f} s; {_tail(self.folder, service)}"
                    )
                time.sleep(0.5)

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM every process, newest first, then SIGKILL what is still running; returns what was killed."""
        killed = stop_services([(s.name, s.pid) for s in self.services], timeout)
        (self.folder / RUN_FILE).unlink(missing_ok=True)
        return [s.name for s in self.services if s.pid in killed]


def _healthy(service: Service) -> bool:
    if service.url is None:
        return True
    try:
        if service.name == "chain":
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
            return "result" in httpx.post(service.url, json=body, timeout=1.0).json()
        return httpx.get(f"{service.url}/health", timeout=2.0).status_code == 200
    except (httpx.HTTPError, ValueError):
        return False


def _tail(folder: Path, service: Service, lines: int = 5) -> str:
    path = folder / "logs" / f"{service.name}.log"
    text = path.read_text(errors="replace").strip().splitlines()[-lines:] if path.exists() else []
    return f"see {path}" + (": " + " | ".join(text) if text else "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that exited but was not reaped yet is not running
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_pids(pids: list[int], timeout: float = 20.0) -> set[int]:
    """SIGTERM every pid, wait for them together; SIGKILL the ones still alive after `timeout`."""
    running = [pid for pid in pids if _alive(pid)]
    for pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = {pid for pid in running if _alive(pid)}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed


def stop_services(services: list[tuple[str, int]], timeout: float = 20.0) -> set[int]:
    """Stops the services first and the chain node last (it must outlive their final transactions)."""
    chain = [pid for name, pid in services if name == "chain"]
    return stop_pids([pid for name, pid in services if name != "chain"], timeout) | stop_pids(chain, timeout)


def down(folder: Path, timeout: float = 20.0) -> list[str]:
    """Stops the detached run in `folder`; returns the names of the services it stopped."""
    path = folder / RUN_FILE
    if not path.exists():
        raise ConfigError(f"{path} does not exist: no coalition started with `up --detach` runs from {folder}")
    try:
        services = json.loads(path.read_text())["services"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a run file: {exc}") from None
    running = [s for s in services if _alive(int(s["pid"]))]
    stop_services([(str(s["name"]), int(s["pid"])) for s in services], timeout)
    path.unlink()
    return [str(s["name"]) for s in running]


def _port(url: str) -> str:
    return str(urlparse(url).port)


# ---- founding and configuration ---------------------------------------------------------------------------


def _site_file(path: Path, settings: UpSettings, index: int, urls: dict[str, str], training: TrainingSection) -> int:
    """Writes one of a hospital's service configs (member.toml, node.toml); returns the port it listens on."""
    name, port = hospital_name(index), free_port()
    encrypted = settings.variant is Variant.C
    lines = [
        f'name = "{name}"',
        'deployment = "../deployment.json"',
        f'vault_url = "{urls["vault"]}"',
        *([f'supervisor_url = "{urls["supervisor"]}"'] if encrypted else []),
        f"dev_account = {index + 1}",
        f'encryption_key = "{name}.x25519.pem"',
        f'data = "../../data/{name}"',
        f'global_test = "../../data/{GLOBAL_CSV if encrypted else GLOBAL}"',
        f'state = "sqlite:///{path.stem}.db"',
        f'attack = "{settings.attack.value if settings.byzantine_at(index) else Attack.NONE.value}"',
        "poll_interval = 0.5",
        "keeper_interval = 5.0",
        "[training]",
        *(f"{k} = {v}" for k, v in training.model_dump().items()),
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
    ]
    path.write_text("\n".join(lines) + "\n")
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
    genesis = encrypted_genesis(store, ModelSpec("logreg", int(global_test.images.shape[1])), settings.seed)
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
    training = TrainingSection(epochs=settings.epochs, seed=settings.seed)
    sites = []
    for i in range(settings.members):
        name = hospital_name(i)
        site = out / "sites" / name
        site.mkdir(parents=True)
        public = save_key(site / f"{name}.x25519.pem", X25519PrivateKey.generate(), password)
        founders.append(Founder(accounts[i + 1].address, public, name))
        for role in ("node", "member"):
            config = site / f"{role}.toml"
            sites.append((config, _site_file(config, settings, i, urls, training)))
    client, deployed = found(chain, accounts[0], store, settings.variant, genesis, [*founders, *supervisors])
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
        vault = ["vault", "serve", "--store", f"file://{store / 'store'}", "--database", access]
        vault += ["--deployment", deployment, "--port", _port(urls["vault"])]
        if settings.variant is Variant.A:
            vault.append("--public-reads")
        run.start(Service("vault", vault, urls["vault"]), env)
        if settings.variant is Variant.C:
            folder = out.resolve() / "supervisor"
            supervisor = ["supervisor", "serve", "--key-file", str(folder / SUPERVISOR_KEY)]
            supervisor += ["--database", f"sqlite:///{folder / 'log.db'}", "--deployment", deployment]
            supervisor += ["--requests-per-minute", "10000", "--port", _port(urls["supervisor"])]
            run.start(Service("supervisor", supervisor, urls["supervisor"]), env)
            on_step("starting the vault and the supervisor (each site fetches the public context at start)")
            run.wait_ready()
        for config, port in sites:
            role = config.stem
            args = ["node", "run"] if role == "node" else ["member", "serve"]
            service = Service(
                f"{role}-{config.parent.name}", [*args, "--config", str(config)], f"http://127.0.0.1:{port}"
            )
            run.start(service, env)
        auditor_port = free_port()
        auditor = ["auditor", "serve", "--deployment", deployment, "--vault", f"file://{store / 'store'}"]
        auditor += ["--access-db", access, "--state", f"sqlite:///{out.resolve() / 'auditor.db'}"]
        auditor += ["--port", str(auditor_port)]
        run.start(Service("auditor", auditor, f"http://127.0.0.1:{auditor_port}"), env)
        on_step(f"starting {len(run.services)} processes (each loads torch and MONAI: this takes a while)")
        run.wait_ready()
        yield run, client
    finally:
        if run._procs:
            run.stop()


# ---- driving rounds through the member APIs --------------------------------------------------------------


@dataclass
class RoundRow:
    round: int
    proposer: str
    byzantine: bool
    job: str
    model_id: int | None = None
    general: str = ""
    state: str = "training"
    approvals: int = 0
    rejections: int = 0
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _member_call(run: Run, hospital: str, method: str, path: str) -> dict[str, Any]:
    url = run.url(f"member-{hospital}") + path
    response = httpx.request(method, url, headers={"Authorization": f"Bearer {run.token}"}, timeout=30.0)
    if response.status_code >= 400:
        raise NodeError(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    document: dict[str, Any] = response.json()
    return document


def drive_round(
    run: Run, client: LedgerClient, settings: UpSettings, index: int, on_update: Callable[[RoundRow], None]
) -> RoundRow:
    """One round: the turn's hospital trains through its member API; the node daemons decide the candidate."""
    member = index % settings.members
    name = hospital_name(member)
    started_at = time.monotonic()
    job = _member_call(run, name, "POST", "/jobs/train")
    row = RoundRow(index + 1, name, settings.byzantine_at(member), str(job["id"]))
    on_update(row)
    deadline = started_at + settings.round_timeout
    while job["state"] not in ("done", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise NodeError(f"round {index + 1}: {name}'s training job {row.job} did not finish in time")
        time.sleep(0.5)
        job = _member_call(run, name, "GET", f"/jobs/{row.job}")
    if job["state"] != "done" or job["model_id"] is None:
        row.state, row.error = job["state"], job.get("error")
        on_update(row)
        return row
    row.model_id, row.state = int(job["model_id"]), "submitted"
    names = {str(a.address): hospital_name(i) for i, a in enumerate(dev_accounts(settings.members + 1)[1:])}
    while True:
        record = client.get_model(row.model_id, with_uri=False)
        row.general = names.get(record.general, record.general)
        row.approvals, row.rejections = record.approvals, record.rejections
        row.state = record.state.name.lower()
        row.seconds = round(time.monotonic() - started_at, 1)
        on_update(row)
        if record.state in FINAL:
            return row
        if time.monotonic() > deadline:
            raise NodeError(f"round {index + 1}: candidate {row.model_id} was not decided in time ({row.state})")
        time.sleep(0.5)


def summary(rows: list[RoundRow], client: LedgerClient, run: Run) -> dict[str, Any]:
    honest = [r for r in rows if not r.byzantine]
    return {
        "chain": run.chain_url,
        "contract": client.address,
        "head": client.head(),
        "rounds": [r.to_json() for r in rows],
        "committed": sum(r.state == "committed" for r in rows),
        "rejected": sum(r.state == "rejected" for r in rows),
        "poisoned_committed": sum(r.byzantine and r.state == "committed" for r in rows),
        "honest_rejected": sum(r.state == "rejected" for r in honest),
        "dashboard": run.url("auditor") + "/",
        "members": {s.name: s.url for s in run.services if s.name.startswith("member-")},
        "vault": run.url("vault"),
        "supervisor": next((s.url for s in run.services if s.name == "supervisor"), None),
        "folder": str(run.folder),
    }


def wait_for_interrupt(run: Run) -> None:
    """Blocks until Ctrl-C or SIGTERM, or until a service dies (named in the error)."""
    stop = {"now": False}

    def handler(*_: object) -> None:
        stop["now"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    while not stop["now"]:
        for service, proc in zip(run.services, run._procs, strict=True):
            if proc.poll() is not None:
                raise NodeError(f"{service.name} exited with code {proc.returncode}; {_tail(run.folder, service)}")
        time.sleep(0.5)


def detach(run: Run) -> None:
    """Leaves the processes running after `up` exits; `tclearn coalition down` stops them."""
    run._procs.clear()
    run.save()
