"""The processes of a coalition started by `tclearn coalition up`: starting each as a `tclearn` command with its
own log, waiting until it answers, stopping them in order, and the run file (`run.json`) that lets `tclearn
coalition down` stop a detached run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tclearn.errors import ConfigError, NodeError

RUN_FILE = "run.json"


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
