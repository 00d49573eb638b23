"""GET /metrics on both services, in the Prometheus text format (prometheus_client).

The counters are the ones each service keeps anyway (what /health shows), read when Prometheus scrapes, so a
line's path pays nothing for them; two histograms are observed as things happen: each HTTP request's duration,
and on the Socket.IO server the lag from a line's timestamp (when the workflow logged it) to its emit. nginx does
not proxy /metrics: scrape each service on its own port on the host (see the role's README).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

# request and lag buckets, in seconds: a line's hop is milliseconds; a slow request or a queue backlog, seconds
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Snapshot = Callable[[], Iterable[Metric]]


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"livelog_{name}", documentation, value=value)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"livelog_{name}", documentation, value=value)


class _Snapshot(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        return self._snapshot()


class ServiceMetrics:
    """One service's metrics: `snapshot` yields its counters and gauges at each scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Snapshot(snapshot))
        self.request_seconds = Histogram(
            "livelog_http_request_duration_seconds",
            "HTTP requests answered, by route, and how long each took",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def histogram(self, name: str, documentation: str) -> Histogram:
        return Histogram(f"livelog_{name}", documentation, buckets=BUCKETS, registry=self.registry)

    def mount(self, app: FastAPI) -> None:
        """Serve them on `app` as GET /metrics (left out of the OpenAPI; nginx does not proxy it)."""

        async def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        app.add_api_route("/metrics", metrics, include_in_schema=False)


class RequestTimer:
    """ASGI middleware: each HTTP request's duration, labelled by its route's template (a bounded set)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.request_seconds.labels(_route(scope)).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None and isinstance(getattr(route, "path", None), str):
        return str(route.path)
    return "/socket.io/" if scope["path"].startswith("/socket.io/") else "other"
