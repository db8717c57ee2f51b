"""Prometheus metrics and the pure-ASGI middleware that records them.

Requests are labelled by route *template* (`/v1/gifts/{gift_id}`), never by raw path, so
random URLs cannot blow up the label set; unmatched paths share the label `<unmatched>`.
Each app has its own registry (tests build many apps). Under `tokenbridge serve
--workers N` the processes share `PROMETHEUS_MULTIPROC_DIR` and `/metrics` aggregates
every worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tokenbridge_http_requests",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tokenbridge_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.gifts = Counter(
            "tokenbridge_gifts",
            "Gifts through the API by result: created, replayed, rejected (with the problem code).",
            ("result", "code"),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "tokenbridge_webhook_events",
            "Payment webhook deliveries by result: processed, replayed, rejected (with the problem code).",
            ("result", "code"),
            registry=self.registry,
        )

        # Label children by label values: `labels()` locks and validates on every call, a dict
        # lookup does not (a few µs per request on the hot path). The label sets are bounded
        # (route templates, not raw paths; problem codes).
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def gift(self, result: str, code: str = "", n: int = 1) -> None:
        self._child(self.gifts, result, code).inc(n)

    def webhook(self, result: str, code: str = "") -> None:
        self._child(self.webhooks, result, code).inc()

    def request(self, method: str, template: str, status: int, seconds: float) -> None:
        self._child(self.requests, method, template, str(status)).inc()
        self._child(self.latency, method, template).observe(seconds)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or body copy)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.request(scope["method"], template, status, time.perf_counter() - start)
