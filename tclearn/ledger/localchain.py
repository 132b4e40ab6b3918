"""Local development chain nodes: Anvil (default) or Ganache, started on 127.0.0.1 and stopped cleanly.

Both come from npm (`contracts/node_modules`, installed by `make chain-tools`) and start with the same
development mnemonic as the embedded chain, so the same dev keys are funded on all three. Imported by the CLI
to build its help, so web3, eth-account and requests are imported only where a node is started or used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tclearn.errors import ConfigError, NodeError

if TYPE_CHECKING:
    from tclearn.ledger.chain import Chain

NODES = ("anvil", "ganache")
_BIN_DIR = Path(__file__).resolve().parents[2] / "contracts" / "node_modules" / ".bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_binary(kind: str) -> Path:
    """`TCLEARN_<KIND>` if set, else the npm-installed binary of the source tree, else PATH."""
    if kind not in NODES:
        raise ConfigError(f"unknown node {kind!r}; expected one of: {', '.join(NODES)}")
    env = os.environ.get(f"TCLEARN_{kind.upper()}")
    candidates = [Path(env)] if env else [_BIN_DIR / kind]
    found = shutil.which(kind)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NodeError(f"{kind} is not installed; run `make chain-tools` (npm installs it into contracts/)")


def _command(
    kind: str, binary: Path, port: int, accounts: int, state: Path | None, block_time: int | None = None
) -> list[str]:
    from tclearn.ledger.accounts import DEV_MNEMONIC

    if kind == "anvil":
        cmd = [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            str(accounts),
            "--silent",
        ]
        if state is not None:
            cmd += ["--state", str(state)]
        if block_time is not None:
            cmd += ["--block-time", str(block_time)]
        return cmd
    cmd = [
        str(binary),
        "--server.host",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--wallet.mnemonic",
        DEV_MNEMONIC,
        "--wallet.totalAccounts",
        str(accounts),
        "--chain.chainId",
        "1337",
        "--logging.quiet",
    ]
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        cmd += ["--database.dbPath", str(state)]
    if block_time is not None:
        cmd += ["--miner.blockTime", str(block_time)]
    return cmd


class LocalNode:
    """A local chain node process; use as a context manager or call start()/stop().

    By default every transaction is mined at once; `block_time` (seconds) mines a block every so often instead,
    as a real network does, so that transactions wait in the node's pool."""

    def __init__(
        self,
        kind: str = "anvil",
        port: int = 0,
        *,
        accounts: int = 10,
        state: Path | None = None,
        block_time: int | None = None,
    ) -> None:
        if block_time is not None and block_time < 1:
            raise ConfigError(f"block_time must be at least 1 second, not {block_time}")
        self.kind = kind
        self.binary = node_binary(kind)
        self.port = port or free_port()
        self.accounts = accounts
        self.state = state
        self.block_time = block_time
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        import requests

        try:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
            return "result" in requests.post(self.url, json=body, timeout=1).json()
        except (requests.RequestException, ValueError):
            return False

    def start(self, timeout: float = 60.0) -> LocalNode:
        if self._answers():
            raise NodeError(f"something already answers at {self.url}; choose another --port")
        cmd = _command(self.kind, self.binary, self.port, self.accounts, self.state, self.block_time)
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise NodeError(f"{self.kind} exited with code {self.process.returncode}: {err.strip()[-500:]}")
            if self._answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise NodeError(f"{self.kind} did not answer at {self.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil writes its --state then), then SIGKILL if it does not exit in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def write_dev_keys(self, path: Path) -> Path:
        """Writes the funded dev accounts (address, private key) as JSON — development chains only."""
        from tclearn.ledger.accounts import dev_accounts

        keys = [{"address": a.address, "private_key": "0x" + bytes(a.key).hex()} for a in dev_accounts(self.accounts)]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.url, "node": self.kind, "accounts": keys}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def __enter__(self) -> LocalNode:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def open_chain(spec: str, accounts: int = 10) -> Iterator[Chain]:
    """A chain with `accounts` funded dev keys: `embedded`, a fresh local `anvil` / `ganache` node (stopped on
    exit), or a JSON-RPC URL of a development node that funds the dev mnemonic's keys."""
    from tclearn.ledger.accounts import dev_accounts
    from tclearn.ledger.chain import connect, embedded_chain

    if spec == "embedded":
        yield embedded_chain(accounts)
    elif spec in NODES:
        with LocalNode(spec, accounts=accounts) as node:
            chain = connect(node.url)
            chain.dev_keys = dev_accounts(accounts)
            yield chain
    else:
        chain = connect(spec)
        chain.dev_keys = dev_accounts(accounts)
        yield chain
