"""The REST API: starts workflow runs, serves their history, and streams their lines via the broadcaster."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, ConfigDict, Field

from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings, socketio_endpoints
from livelog.models import MAX_MESSAGE_CHARS, RUN_ID_PATTERN
from livelog.store import RunStore
from livelog.workflows import RunLogger, RunRequest, run_workflow

log = logging.getLogger("livelog.api")


class TestLogRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: Annotated[str, Field(pattern=RUN_ID_PATTERN)] | None = None
    message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)] = "livelog test line"


def create_api(settings: Settings) -> FastAPI:
    tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = RunStore(settings.livelog_data_dir / "api.sqlite3")
        if interrupted := store.mark_interrupted():
            log.warning("[EXECUTOR] %d runs were interrupted by the previous shutdown", interrupted)
        broadcaster = HttpBroadcaster(
            socketio_endpoints(settings), token=settings.token, queue_size=settings.livelog_queue_size
        )
        await broadcaster.start()
        app.state.store, app.state.broadcaster = store, broadcaster
        yield
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broadcaster.close()
        store.close()

    app = FastAPI(title="livelog REST API", lifespan=lifespan)
    if settings.livelog_cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.livelog_cors_origins, allow_methods=["GET", "POST"])

    def new_run(run_id: str, workflow: str, params: dict[str, Any]) -> RunStore:
        store: RunStore = app.state.store
        if not store.create_run(run_id, workflow, params):
            raise HTTPException(status_code=409, detail=f"run {run_id} exists")
        return store

    def start_run(request: RunRequest) -> str:
        run_id = request.run_id or uuid.uuid4().hex[:16]
        store = new_run(run_id, request.workflow, request.model_dump(exclude={"run_id"}))
        task = asyncio.create_task(_execute(run_id, request, store, app.state.broadcaster))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return run_id

    @app.get("/health")
    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        broadcaster: HttpBroadcaster = app.state.broadcaster
        return {
            "status": "degraded" if broadcaster.failing else "healthy",
            "service": "api",
            "port": settings.rest_api_port,
            "runs_active": len(tasks),
            "broadcaster": broadcaster.stats(),
        }

    @app.post("/api/runs", status_code=202)
    async def create_run(request: RunRequest | None = None) -> dict[str, Any]:
        run_id = start_run(request or RunRequest())
        return {"run_id": run_id, "status": "running", "logs": f"/api/runs/{run_id}/logs"}

    @app.get("/api/runs")
    async def list_runs(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return app.state.store.recent_runs(limit)

    @app.get("/api/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        run = app.state.store.get_run(run_id)
        if run is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return run

    @app.get("/api/runs/{run_id}/logs")
    async def get_logs(
        run_id: str,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        store: RunStore = app.state.store
        if store.get_run(run_id) is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return store.lines(run_id, after_seq, limit)

    @app.post("/api/test-log")
    async def test_log(request: TestLogRequest | None = None) -> dict[str, Any]:
        request = request or TestLogRequest()
        run_id = request.run_id or f"test-{uuid.uuid4().hex[:12]}"
        store = new_run(run_id, "test-log", {})
        line = RunLogger(run_id, store, app.state.broadcaster)(f"[TEST] {request.message}")
        store.finish_run(run_id, "succeeded")
        return {"run_id": run_id, "seq": line["seq"], "endpoint": app.state.broadcaster.endpoint}

    return app


async def _execute(run_id: str, request: RunRequest, store: RunStore, broadcaster: HttpBroadcaster) -> None:
    emit = RunLogger(run_id, store, broadcaster)
    try:
        await run_workflow(request, emit)
    except asyncio.CancelledError:
        emit("[EXECUTOR] Run cancelled by shutdown", "WARNING")
        store.finish_run(run_id, "interrupted")
        raise
    except Exception as exc:
        log.exception("[EXECUTOR] Run %s failed", run_id)
        emit(f"[EXECUTOR] Run failed: {exc}", "ERROR")
        store.finish_run(run_id, "failed", str(exc))
    else:
        store.finish_run(run_id, "succeeded")
