"""The REST API's routes: start workflow runs, read their history, send a test line."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from livelog.auth import mint_viewer_token
from livelog.config import reveal
from livelog.deps import BroadcasterDep, KeyHolderDep, ReaderDep, RunsDep, SettingsDep, StoreDep
from livelog.models import (
    ALL_RUNS,
    MAX_SEQ,
    RUN_ID_PATTERN,
    ApiHealth,
    LogLine,
    Run,
    RunStarted,
    StoreState,
    TestLogRequest,
    TestLogSent,
    ViewerToken,
    ViewerTokenRequest,
)
from livelog.raw_log import raw_log
from livelog.workflows import RunRequest

router = APIRouter()
Responses = dict[int | str, dict[str, Any]]
UNAUTHORIZED: Responses = {401: {"description": "No API key, or not a valid one"}}
# FastAPI's own answer to a body it cannot decode (not UTF-8, not JSON at all)
UNREADABLE: Responses = {400: {"description": "The body could not be read as JSON"}}
READ: Responses = {**UNAUTHORIZED, 403: {"description": "The viewer token does not cover this run"}}
NOT_FOUND: Responses = {**READ, 404: {"description": "No such run"}}
TAKEN: Responses = {
    **UNAUTHORIZED,
    **UNREADABLE,
    409: {"description": "The run id is taken, or held for a week after retention removed its run"},
}
STARTED: Responses = {**TAKEN, 429: {"description": "This API key has the most runs going it may have"}}
# a run id in a path: one a run could have, or 422 (not a 404 that names whatever was asked for)
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN)]


@router.get("/health")
async def health(settings: SettingsDep, broadcaster: BroadcasterDep, runs: RunsDep) -> ApiHealth:
    """The service's state, for the host (nginx does not proxy it; `/health` there is the Socket.IO server's)."""
    return ApiHealth(
        status="degraded" if broadcaster.failing else "healthy",
        service="api",
        port=settings.rest_api_port,
        runs_active=runs.active,
        broadcaster=broadcaster.state(),
        store=StoreState(
            written=runs.store.writer.written,
            batches=runs.store.writer.batches,
            pending=runs.store.writer.pending,
            dropped=runs.store.writer.dropped,
        ),
    )


@router.get("/api/health", responses=UNAUTHORIZED)
async def api_health(
    _caller: KeyHolderDep, settings: SettingsDep, broadcaster: BroadcasterDep, runs: RunsDep
) -> ApiHealth:
    """The same state, for key holders: it names the internal endpoint."""
    return await health(settings, broadcaster, runs)


@router.post("/api/runs", status_code=202, responses=STARTED)
async def create_run(caller: KeyHolderDep, runs: RunsDep, request: RunRequest | None = None) -> RunStarted:
    run_id = await runs.start(request or RunRequest(), owner=caller.owner)
    return RunStarted(run_id=run_id, status="running", logs=f"/api/runs/{run_id}/logs")


@router.get("/api/runs", responses=UNAUTHORIZED)
async def list_runs(caller: ReaderDep, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Run]:
    """The newest runs; for a viewer token, the newest of its runs."""
    if caller.grant is None or ALL_RUNS in caller.grant.runs:
        return await store.recent_runs(limit)
    return await store.recent_runs(limit, only=caller.grant.runs)


async def _readable_run(caller: ReaderDep, store: StoreDep, run_id: str) -> Run:
    """The run, if the caller may read it (else 403) and it exists (else 404)."""
    if not caller.may_read(run_id):
        raise HTTPException(status_code=403, detail=f"the viewer token does not cover run {run_id}")
    run = await store.get_run(run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"no run {run_id}")
    return run


@router.get("/api/runs/{run_id}", responses=NOT_FOUND)
async def get_run(caller: ReaderDep, store: StoreDep, run_id: RunIdPath) -> Run:
    return await _readable_run(caller, store, run_id)


@router.get("/api/runs/{run_id}/logs", responses=NOT_FOUND)
async def get_logs(
    caller: ReaderDep,
    store: StoreDep,
    run_id: RunIdPath,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[LogLine]:
    await _readable_run(caller, store, run_id)
    return await store.lines(run_id, after_seq, limit)


RAW_LOG: Responses = {
    **NOT_FOUND,
    200: {
        "description": "Every stored line of the run: time (UTC), level, message without terminal escapes",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


@router.get("/api/runs/{run_id}/logs.txt", response_class=PlainTextResponse, responses=RAW_LOG)
async def download_logs(caller: ReaderDep, store: StoreDep, run_id: RunIdPath) -> StreamingResponse:
    """The run's whole log as text, streamed, to save as a file."""
    await _readable_run(caller, store, run_id)  # waits for the lines logged before now (or 503): the stream does not
    # a RunIdPath (letters, digits, `_.:-`): safe in the header as it is
    disposition = f'attachment; filename="livelog-{run_id}.log"'
    return StreamingResponse(
        raw_log(store, run_id), media_type="text/plain; charset=utf-8", headers={"Content-Disposition": disposition}
    )


@router.post("/api/test-log", responses=TAKEN)
async def test_log(
    _caller: KeyHolderDep, runs: RunsDep, broadcaster: BroadcasterDep, request: TestLogRequest | None = None
) -> TestLogSent:
    request = request or TestLogRequest()
    line = await runs.log_test_line(request.run_id, request.message)
    return TestLogSent(run_id=line["run_id"], seq=line["seq"], endpoint=broadcaster.endpoint)


@router.post(
    "/api/viewer-tokens",
    responses={**UNAUTHORIZED, **UNREADABLE, 503: {"description": "Viewer tokens are not configured"}},
)
async def create_viewer_token(_caller: KeyHolderDep, settings: SettingsDep, request: ViewerTokenRequest) -> ViewerToken:
    """A short-lived token for a browser: it may read the runs named (`*`: every run) until it expires."""
    secret = reveal(settings.viewer_token_secret)
    if secret is None:
        raise HTTPException(status_code=503, detail="viewer tokens are off: LIVELOG_VIEWER_TOKEN_SECRET is not set")
    token, expires = mint_viewer_token(secret, request.runs, request.ttl_s)
    return ViewerToken(token=token, expires=expires)
