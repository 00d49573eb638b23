"""The REST API's app: builds the store, the broadcaster and the run manager for its lifetime, and mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from livelog.api import router
from livelog.broadcaster import ErrorKind, HttpBroadcaster
from livelog.config import Settings, reveal, socketio_endpoints
from livelog.deps import ApiState
from livelog.http_body import BodyLimit
from livelog.http_errors import answer_errors
from livelog.logs import TaggedLogger
from livelog.metrics import RequestTimer, ServiceMetrics, counter, gauge
from livelog.runs import RunExists, RunIdHeld, RunManager, TooManyRuns
from livelog.store import RunStore

log = TaggedLogger("livelog.api", "[EXECUTOR]")


def create_api(settings: Settings) -> FastAPI:
    """The REST API. Its store opens here, before uvicorn starts, so that one SQLite cannot use now (locked by another
    process, a read-only disk) ends `livelog serve` with one line (cli.py), not a lifespan's traceback."""
    store = RunStore(settings.data_dir / "api.sqlite3")
    if interrupted := store.mark_interrupted():
        log.warning("%d runs were interrupted by the previous shutdown", interrupted)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.start()
        broadcaster = HttpBroadcaster(
            socketio_endpoints(settings), token=reveal(settings.broadcast_token), queue_size=settings.queue_size
        )
        await broadcaster.start()
        runs = RunManager(
            store,
            broadcaster,
            max_runs_per_owner=settings.max_runs_per_key,
            retention_s=settings.retention_days * 86400,
            retention_lines=settings.retention_lines,
        )
        await runs.prune()
        app.state.livelog = ApiState(settings=settings, store=store, broadcaster=broadcaster, runs=runs)
        yield
        await runs.shutdown()
        await broadcaster.close()
        await store.close()

    app = FastAPI(title="livelog REST API", lifespan=lifespan)
    metrics = ServiceMetrics(lambda: _metrics(app.state.livelog))

    metrics.mount(app)

    if settings.cors_origins:
        # a frontend on another origin sends a viewer token (or a key) in Authorization
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RunExists, _answer(409))
    app.add_exception_handler(RunIdHeld, _answer(409))
    app.add_exception_handler(TooManyRuns, _answer(429))
    answer_errors(app, log)
    app.include_router(router)
    app.add_middleware(RequestTimer, metrics=metrics)
    return app


def _metrics(state: ApiState) -> Iterator[Metric]:
    writer, broadcaster = state.store.writer, state.broadcaster
    yield counter("lines_logged", "Lines workflows logged", writer.appended)
    yield counter("lines_stored", "Lines committed to the run store", writer.written)
    yield counter("store_batches", "Transactions that committed them", writer.batches)
    yield gauge("store_pending_lines", "Lines waiting to be written to the run store", writer.pending)
    yield counter(
        "lines_store_dropped", "Lines left out of the run store (too many waiting, or a failed write)", writer.dropped
    )
    yield counter("lines_sent", "Lines the broadcaster delivered to the Socket.IO server", broadcaster.sent)
    yield gauge("broadcast_queue_lines", "Lines waiting in the broadcaster's queue", broadcaster.queued)
    yield counter(
        "lines_broadcast_dropped",
        "Lines the broadcaster dropped (queue full, or refused for good)",
        broadcaster.dropped,
    )
    failures = CounterMetricFamily("livelog_broadcast_failures", "Failed deliveries, by kind", labels=["kind"])
    for kind in ErrorKind:
        failures.add_metric([kind.value], broadcaster.failures_by_kind[kind])
    yield failures
    yield gauge("runs_active", "Workflow runs going", state.runs.active)


def _answer(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    return answer
