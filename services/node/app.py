"""The node daemon's HTTP face: the duty loop (`tclearn.site.node.NodeRunner`) runs in a background thread
for the app's lifetime; two read-only endpoints report on it.

    GET /health    node, account, running, last block, event cursor       200 / 503 (the loop is not running)
    GET /metrics   Prometheus text format                                 200

Run it with `tclearn node run --config node.toml` (or `uvicorn --factory services.node.app:app_from_env` with
`TCLEARN_NODE_CONFIG` naming the file; `TCLEARN_NODE_*` variables override it: docs/deploy.md, "Settings").
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from services.common import service_app
from tclearn.site.config import NodeSettings, SiteConfig, site_from_env
from tclearn.site.node import NodeRunner
from tclearn.site.open import open_site
from tclearn.state.db import Database

PREFIX = "tclearn_node_"


class NodeCollector(Collector):
    """Reads the runner's counters at every scrape."""

    def __init__(self, runner: NodeRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        s = self.runner.stats.snapshot()
        seen = CounterMetricFamily(PREFIX + "candidates_seen", "Candidates seen submitted on chain")
        seen.add_metric([], s.candidates_seen)
        votes = CounterMetricFamily(PREFIX + "votes_cast", "Votes this node cast", labels=["approve"])
        for approve, key in (("true", "approve"), ("false", "reject")):
            votes.add_metric([approve], s.votes[key])
        duties = CounterMetricFamily(PREFIX + "duties", "Duties performed", labels=["duty"])
        for duty in ("open", "vote", "decide", "reassigned", "expired"):
            duties.add_metric([duty], s.duties[duty])
        late = CounterMetricFamily(
            PREFIX + "late_votes", "Signed votes not posted: the candidate was decided while this node assessed it"
        )
        late.add_metric([], s.late_votes)
        failures = CounterMetricFamily(
            PREFIX + "duty_failures",
            "Duties that failed: refused by the contract, or an error",
            labels=["duty", "reason"],
        )
        for (duty, reason), count in sorted(s.failures.items()):
            failures.add_metric([duty, reason], count)
        errors = CounterMetricFamily(PREFIX + "errors", "Failed steps and duties")
        errors.add_metric([], s.errors)
        evaluation = SummaryMetricFamily(
            PREFIX + "evaluation_seconds", "Seconds spent evaluating candidates and heads on G and L, per vote"
        )
        evaluation.add_metric([], count_value=s.evaluations, sum_value=s.evaluation_seconds)
        block = GaugeMetricFamily(PREFIX + "last_block", "Last block whose events this node has read")
        block.add_metric([], s.last_block)
        running = GaugeMetricFamily(PREFIX + "running", "1 while the duty loop runs")
        running.add_metric([], int(s.running))
        yield from (seen, votes, duties, late, failures, errors, evaluation, block, running)


def create_app(runner: NodeRunner, *, on_close: Callable[[], None] | None = None) -> FastAPI:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(runner))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), name=f"node-{runner.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()  # the runner finishes the duty in progress, then returns
            await run_in_threadpool(thread.join)
            if on_close is not None:
                on_close()

    app = service_app("tclearn node", registry=registry, lifespan=lifespan)

    @app.get("/health")
    def health() -> JSONResponse:
        s = runner.stats.snapshot()
        body = {
            "status": "ok" if s.running else "stopped",
            "node": runner.name,
            "address": runner.me,
            "running": s.running,
            "last_block": s.last_block,
            "cursor": {"block": s.cursor[0], "log_index": s.cursor[1]},
            "errors": s.errors,
        }
        return JSONResponse(body, status_code=200 if s.running else 503)

    return app


def app_for(config: SiteConfig) -> FastAPI:
    """The daemon for a loaded site file: opens the site (chain, vault, data); the duty loop starts with the app."""
    site = open_site(config)
    db = Database(site.config.state)
    runner = NodeRunner(site, db)

    def close() -> None:
        site.close()
        db.dispose()

    app = create_app(runner, on_close=close)
    app.state.settings = config
    return app


def app_from_env() -> FastAPI:
    """The daemon for the site file named by `TCLEARN_NODE_CONFIG`, under `TCLEARN_NODE_*` variables."""
    return app_for(site_from_env(NodeSettings))
