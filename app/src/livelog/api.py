"""The REST API's routes: start workflow runs, read their history, send a test line."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from livelog.deps import BroadcasterDep, RunsDep, SettingsDep, StoreDep
from livelog.models import ApiHealth, LogLine, Run, RunStarted, TestLogRequest, TestLogSent
from livelog.workflows import RunRequest

router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run"}}


@router.get("/health")
@router.get("/api/health")
async def health(settings: SettingsDep, broadcaster: BroadcasterDep, runs: RunsDep) -> ApiHealth:
    return ApiHealth(
        status="degraded" if broadcaster.failing else "healthy",
        service="api",
        port=settings.rest_api_port,
        runs_active=runs.active,
        broadcaster=broadcaster.state(),
    )


@router.post("/api/runs", status_code=202, responses={409: {"description": "The run id is taken"}})
async def create_run(runs: RunsDep, request: RunRequest | None = None) -> RunStarted:
    run_id = runs.start(request or RunRequest())
    return RunStarted(run_id=run_id, status="running", logs=f"/api/runs/{run_id}/logs")


@router.get("/api/runs")
async def list_runs(store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Run]:
    return store.recent_runs(limit)


@router.get("/api/runs/{run_id}", responses=NOT_FOUND)
async def get_run(store: StoreDep, run_id: str) -> Run:
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"no run {run_id}")
    return run


@router.get("/api/runs/{run_id}/logs", responses=NOT_FOUND)
async def get_logs(
    store: StoreDep,
    run_id: str,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[LogLine]:
    if store.get_run(run_id) is None:
        raise HTTPException(status_code=404, detail=f"no run {run_id}")
    return store.lines(run_id, after_seq, limit)


@router.post("/api/test-log", responses={409: {"description": "The run id is taken"}})
async def test_log(runs: RunsDep, broadcaster: BroadcasterDep, request: TestLogRequest | None = None) -> TestLogSent:
    request = request or TestLogRequest()
    line = runs.log_test_line(request.run_id, request.message)
    return TestLogSent(run_id=line["run_id"], seq=line["seq"], endpoint=broadcaster.endpoint)
