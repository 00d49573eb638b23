"""The REST API's app: builds the store, the broadcaster and the run manager for its lifetime, and mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from livelog.api import router
from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings, reveal, socketio_endpoints
from livelog.deps import ApiState
from livelog.http_body import BodyLimit
from livelog.http_errors import answer_errors
from livelog.logs import TaggedLogger
from livelog.runs import RunExists, RunManager, TooManyRuns
from livelog.store import RunStore

log = TaggedLogger("livelog.api", "[EXECUTOR]")


def create_api(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = RunStore(settings.data_dir / "api.sqlite3")
        store.start()
        if interrupted := store.mark_interrupted():
            log.warning("%d runs were interrupted by the previous shutdown", interrupted)
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
        runs.prune()
        app.state.livelog = ApiState(settings=settings, store=store, broadcaster=broadcaster, runs=runs)
        yield
        await runs.shutdown()
        await broadcaster.close()
        await store.close()

    app = FastAPI(title="livelog REST API", lifespan=lifespan)
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
    app.add_exception_handler(TooManyRuns, _answer(429))
    answer_errors(app, log)
    app.include_router(router)
    return app


def _answer(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    return answer
