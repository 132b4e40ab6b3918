"""What the services' observability middleware costs per request: a trivial ASGI app called directly, bare and
behind `ObservabilityMiddleware` (request id, route template, latency histogram, byte counters), alternately.

    PYTHONPATH=. python bench/observability.py [--requests 2000] [--repeats 15]

Prints one JSON document: microseconds per request, each the minimum over --repeats runs (so that load from
other processes on a shared machine weighs as little as it can), and their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Run as a script, this file's folder comes first on sys.path and bench/services.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from services.observability import HttpMetrics, ObservabilityMiddleware  # noqa: E402

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "path": "/health",
    "root_path": "",
    "headers": [(b"host", b"bench"), (b"x-request-id", b"bench-1")],
}


def apps() -> tuple[ASGIApp, ASGIApp]:
    owner = FastAPI()

    @owner.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    route = owner.router.routes[-1]

    async def bare(scope: Scope, _receive: Receive, send: Send) -> None:
        scope["route"] = route  # as FastAPI's router leaves it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

    return bare, ObservabilityMiddleware(bare, owner=owner, metrics=HttpMetrics(CollectorRegistry()))


async def per_request(app: ASGIApp, requests: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_message: Message) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, repeats: int) -> dict[str, float]:
    bare, observed = apps()
    bare_us, observed_us = [], []
    for _ in range(repeats):
        bare_us.append(await per_request(bare, requests))
        observed_us.append(await per_request(observed, requests))
    return {
        "bare_us": round(min(bare_us), 2),
        "observed_us": round(min(observed_us), 2),
        "overhead_us": round(min(observed_us) - min(bare_us), 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.requests, args.repeats)), indent=2))
