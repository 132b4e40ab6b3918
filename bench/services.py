"""Member service benchmark: `GET /models` and model download under concurrent clients on loopback, and the time
from `POST /jobs/train` returning to the candidate's commit, by phase.

    PYTHONPATH=. python bench/services.py [--clients 32] [--requests 3000] [--out bench-services.json]

A fresh Anvil node, a coalition of three hospitals (the test suite's `deploy_sites`: synthetic 32x32 data, a
real genesis model), the vault (`tclearn vault serve`) and hospital-1's member service (`tclearn member serve`)
each in its own process on 127.0.0.1. The clients are asyncio tasks with keep-alive httpx connections, calling
with the operator token (and, for one row, as a peer signing every request). Latencies are per request.

Commit timing: hospital-1's job trains, stores and submits (its own phase timings: training, vault, ledger); the
general's and validators' duties are then driven in-process by this script with the other hospitals' sites,
because the node daemon (`tclearn node run`) has not landed yet. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

# Run as a script, this file's folder comes first on sys.path and this file would shadow the `services` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from tclearn.coalition.member import propose  # noqa: E402
from tclearn.coalition.rounds import settle  # noqa: E402
from tclearn.ledger.localchain import LocalNode, free_port  # noqa: E402
from tclearn.types import ModelState, Variant  # noqa: E402
from tclearn.vault.audience import Audience, CoalitionId  # noqa: E402
from tclearn.vault.signing import sign_request  # noqa: E402
from tests.services.conftest import OPERATOR_TOKEN, deploy_sites, operator_headers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0


@contextmanager
def service(args: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    """`tclearn ARGS --port PORT` in its own process until it answers /health (member) or a 404 (vault)."""
    command = [sys.executable, "-m", "tclearn.cli.app", *args, "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(args[:2])} did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, path: str, headers: Callable[[], dict[str, str]], clients: int, total: int) -> dict[str, Any]:
    """`total` GETs of `path` shared by `clients` concurrent keep-alive clients; throughput and latency."""
    latencies: list[float] = []
    failures = 0
    remaining = [total]

    async def worker() -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while remaining[0] > 0:
                remaining[0] -= 1
                started = time.perf_counter()
                response = await client.get(path, headers=headers())
                await response.aread()
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200

    remaining[0] = clients * 4
    await asyncio.gather(*(worker() for _ in range(clients)))  # warm-up: connections, caches
    latencies.clear()
    remaining[0], failures = total, 0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = [1000 * v for v in latencies]
    return {
        "path": path,
        "clients": clients,
        "requests": len(ms),
        "failures": failures,
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


def time_to_commit(member_url: str, deployed: Any) -> dict[str, Any]:
    """POST /jobs/train, poll the job until submitted, then the general's and validators' duties until committed."""
    sites = [deployed.open(i) for i in range(len(deployed.configs))]
    try:
        headers = operator_headers()
        with httpx.Client(base_url=member_url, timeout=60) as client:
            posted = time.perf_counter()
            job = client.post("/jobs/train", headers=headers).json()
            returned = time.perf_counter()
            while job["state"] in ("queued", "running"):
                time.sleep(0.02)
                job = client.get(f"/jobs/{job['id']}", headers=headers).json()
            submitted = time.perf_counter()
        if job["state"] != "done":
            raise RuntimeError(f"the training job ended {job['state']}: {job['error']}")
        contexts = [(s.coalition, s.hospital) for s in sites[1:]]
        for co, _ in contexts:
            co.clock.seconds.clear()
        state = settle(contexts, job["model_id"])
        committed = time.perf_counter()
        duties: dict[str, float] = {}
        for co, _ in contexts:
            for phase, seconds in co.clock.seconds.items():
                duties[phase] = duties.get(phase, 0.0) + seconds
        return {
            "state": state.name.lower(),
            "post_returned_s": round(returned - posted, 4),
            "post_to_submitted_s": round(submitted - returned, 4),
            "submitted_to_commit_s": round(committed - submitted, 4),
            "post_to_commit_s": round(committed - returned, 4),
            "job_phases_s": job["timings"],
            "job_queue_s": round(job["started_at"] - job["created_at"], 4),
            "general_and_validators_phases_s": {k: round(v, 4) for k, v in duties.items()},
            "waiting_for_votes": "general and validator duties run in-process by this bench, one after the other "
            "(the node daemon had not landed); no polling delay is included",
        }
    finally:
        for site in sites:
            site.close()


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Prints the report as JSON, and writes it to `out` too when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-ups: services and Anvil stop too
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000, help="GET /models requests per row")
    parser.add_argument("--downloads", type=int, default=640, help="model downloads")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, LocalNode("anvil", accounts=10) as node:
        folder = Path(tmp)
        with deploy_sites(node, folder, Variant.A) as deployed:
            first = deployed.open(0)  # a committed model 1 to download: one round driven in-process
            proposal = propose(first.coalition, first.hospital)
            others = [deployed.open(i) for i in (1, 2)]
            assert settle([(s.coalition, s.hospital) for s in others], proposal.submission.model_id) is (
                ModelState.COMMITTED
            )
            for site in (first, *others):
                site.close()
            vault_port = free_port()
            vault_args = [
                "vault",
                "serve",
                "--store",
                f"file://{folder}/vault",
                "--database",
                f"sqlite:///{folder}/vault-bench.db",
                "--deployment",
                str(folder / "deployment.json"),
            ]
            with service(vault_args, vault_port, {}) as vault_url:
                config = deployed.configs[0]
                config.write_text(config.read_text().replace(deployed.vault_url, vault_url))
                member_env = {"TCLEARN_OPERATOR_TOKEN": OPERATOR_TOKEN}
                member_args = ["member", "serve", "--config", str(config), "--no-access-log"]
                with service(member_args, free_port(), member_env) as url:
                    peer = deployed.accounts[1]
                    audience = Audience.of(url, CoalitionId.of_client(deployed.client))
                    blob = f"/models/{proposal.submission.model_id}/blob"
                    rows = {
                        "models_operator": asyncio.run(
                            load(url, "/models", operator_headers, args.clients, args.requests)
                        ),
                        "models_signed_peer": asyncio.run(
                            load(
                                url,
                                "/models",
                                lambda: sign_request(peer, audience, "GET", "/models"),
                                args.clients,
                                args.requests,
                            )
                        ),
                        "blob_download": asyncio.run(load(url, blob, operator_headers, args.clients, args.downloads)),
                    }
                    size = len(httpx.get(url + blob, headers=operator_headers()).content)
                    rows["blob_download"]["blob_bytes"] = size
                    commit = time_to_commit(url, deployed)
    p99 = rows["models_operator"]["p99_ms"]
    report = {
        "benchmark": "member service",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": "anvil + vault + member service, each its own process on 127.0.0.1; variant A; 3 hospitals; "
        "32x32 synthetic images, 8 training samples, 1 epoch, batch 4",
        "load": rows,
        "target": {"models_p99_ms": TARGET_P99_MS, "met": p99 < TARGET_P99_MS},
        "post_to_commit": commit,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
