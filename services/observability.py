"""What every service reports about itself: a request id on every request and response, HTTP metrics, `/metrics`.

`install_observability(app)` adds one ASGI middleware and the `GET /metrics` route (Prometheus text format) over
the app's own `CollectorRegistry` (so that several apps in one process never share or collide on metrics); a
service registers its domain metrics on `metrics_registry(app)`. Per request the middleware:

- takes the caller's `X-Request-ID` if it is sane (1-128 of `A-Z a-z 0-9 . _ : -`), else makes one (32 hex
  digits); sets it in `tclearn.logs.REQUEST_ID` for the log lines written meanwhile and returns it in the
  response's `X-Request-ID` header;
- observes `tclearn_http_request_duration_seconds` (histogram: from the request's arrival to its last body byte
  sent) and counts `tclearn_http_request_bytes_total` / `tclearn_http_response_bytes_total` (bodies), labelled by
  method (`OTHER` for a method outside the usual seven), the route's template (`/blobs/{sha256}`, never the raw
  path; `unmatched` for paths no route serves) and, for the histogram, the status code: whatever callers send,
  the number of series stays bounded.

A request that ends in an unexpected exception is counted with status 500; its response comes from the error
handler outside the middleware (`services.common`), which reads the id from the context variable.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tclearn.logs import REQUEST_ID

HEADER = "x-request-id"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})  # any other is labelled OTHER
# Prometheus' default buckets, stretched to the minutes a model upload or an encrypted evaluation may take.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def request_id(incoming: str | None) -> str:
    """The caller's id if it is sane, else a fresh one."""
    if incoming is not None and SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def route_template(app: FastAPI, routed: Scope, pristine: Scope) -> str:
    """The template of the route that served a request (a mount as `/prefix/{path}`), or `unmatched`: from the
    `routed` scope where FastAPI's route put itself, else by matching the scope as it arrived (`pristine`)."""
    route = routed.get("route")
    if route is not None and isinstance(getattr(route, "path", None), str):
        return str(route.path)
    for candidate in app.router.routes:
        match, _ = candidate.matches(pristine)
        if match is not Match.NONE:
            path = str(getattr(candidate, "path", UNMATCHED))
            return f"{path}/{{path}}" if isinstance(candidate, Mount) else path
    return UNMATCHED


class HttpMetrics:
    """The HTTP series of one app, on its registry (each label set's children kept: `labels()` takes a lock)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "tclearn_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's last byte",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_bytes = Counter(
            "tclearn_http_request_bytes", "Request body bytes received", ["method", "route"], registry=registry
        )
        self.response_bytes = Counter(
            "tclearn_http_response_bytes", "Response body bytes sent", ["method", "route"], registry=registry
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float, received: int, sent: int) -> None:
        key = (method if method in METHODS else "OTHER", route, str(status))
        children = self._children.get(key)
        if children is None:
            children = (
                self.latency.labels(*key),
                self.request_bytes.labels(*key[:2]),
                self.response_bytes.labels(*key[:2]),
            )
            self._children[key] = children
        latency, request_bytes, response_bytes = children
        latency.observe(seconds)
        request_bytes.inc(received)
        response_bytes.inc(sent)


class ObservabilityMiddleware:
    """Pure ASGI (it streams: bodies are counted as they pass, never buffered)."""

    def __init__(self, app: ASGIApp, *, owner: FastAPI, metrics: HttpMetrics) -> None:
        self.app, self.owner, self.metrics = app, owner, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        pristine = dict(scope)  # the router rewrites `root_path` and `path_params` in place as it routes
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == HEADER.encode()), None)
        rid = request_id(incoming)
        REQUEST_ID.set(rid)  # this request's task only; left set for the error handler outside this middleware
        sizes = {"in": 0, "out": 0}
        status = [500]

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                sizes["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), rid.encode())]
            elif message["type"] == "http.response.body":
                sizes["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            route = route_template(self.owner, scope, pristine)
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route, status[0], seconds, sizes["in"], sizes["out"])


def install_observability(app: FastAPI, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Request ids, HTTP metrics and `GET /metrics` on `app`, over `registry` (a new one by default)."""
    registry = registry or CollectorRegistry(auto_describe=True)
    app.state.metrics_registry = registry
    app.add_middleware(ObservabilityMiddleware, owner=app, metrics=HttpMetrics(registry))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry


def metrics_registry(app: FastAPI) -> CollectorRegistry:
    """The registry `install_observability` gave `app`: where its service registers its domain metrics."""
    registry: Any = app.state.metrics_registry
    assert isinstance(registry, CollectorRegistry)
    return registry
