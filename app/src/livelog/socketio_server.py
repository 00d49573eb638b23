"""The Socket.IO server: takes batches of log lines over HTTP and pushes them to subscribed browsers.

One ASGI app: python-socketio handles `/socket.io/`, FastAPI the rest (`/health`, `/internal/broadcast`).
Rooms: `run:<id>` and `all` get one `log` event per line; `batch:run:<id>` and `batch:all` one `logs`
event per batch (a list), for clients that subscribed with `batch: true`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import defaultdict
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated, Any

import socketio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livelog.backlog import Backlog, RedisBacklog, SqliteBacklog
from livelog.config import Settings
from livelog.http_body import read_capped_body
from livelog.models import RUN_ID_PATTERN, RUN_SELECTOR_PATTERN, BroadcastBatch

log = logging.getLogger("livelog.socketio")

ALL_RUNS = "*"
# runs whose highest emitted seq a node remembers
MAX_TRACKED_RUNS = 10_000
SeqMark = Annotated[int, Field(ge=0)]


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: Annotated[str, Field(pattern=RUN_SELECTOR_PATTERN)]
    # per run: replay lines after this seq (0 = all kept). For `*`: an int for every run, a mapping per
    # run (runs it does not name are replayed whole), or nothing for live lines only.
    after_seq: SeqMark | dict[Annotated[str, Field(pattern=RUN_ID_PATTERN)], SeqMark] | None = None
    batch: bool = False


def _room(run_id: str, batch: bool) -> str:
    prefix = "batch:" if batch else ""
    return f"{prefix}all" if run_id == ALL_RUNS else f"{prefix}run:{run_id}"


class LogHub:
    """Fans lines out to rooms and replays the backlog to new subscribers, each line once and in order.

    `seen[event][run]` is the highest seq this node has emitted to its rooms as `log` (one line) or `logs`
    (a list). A line goes out only when its seq is above that mark, so a batch the broadcaster retries, here
    or on another node, is not emitted twice, and a line another node stored but never emitted still goes
    out. A subscriber joins its room and is replayed the backlog up to the mark, all under `lock`, which
    every emit of lines also takes: what went out before the join comes in the replay, what goes out after
    it comes live. With several nodes, lines published by another node reach this one through Redis; the
    manager below takes the same lock and the same marks for them.
    """

    def __init__(self, sio: socketio.AsyncServer, backlog: Backlog) -> None:
        self.sio = sio
        self.backlog = backlog
        self.lock = asyncio.Lock()
        self.seen: dict[str, dict[str, int]] = {"log": {}, "logs": {}}
        self.clients = 0
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        self.lines_received = 0
        self.lines_emitted = 0

    def fresh(self, event: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The lines not emitted as `event` yet (call under `lock`); they count as emitted from now on."""
        seen = self.seen[event]
        out = []
        for line in lines:
            if line["seq"] > seen.get(line["run_id"], 0):
                seen[line["run_id"]] = line["seq"]
                out.append(line)
        while len(seen) > MAX_TRACKED_RUNS:
            del seen[next(iter(seen))]
        return out

    async def publish(self, lines: list[dict[str, Any]]) -> int:
        async with self.lock:
            await self.backlog.add(lines)
            singles = self.fresh("log", lines)
            for line in singles:
                await self.sio.emit("log", line, room=[f"run:{line['run_id']}", "all"])
            by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for line in self.fresh("logs", lines):
                by_run[line["run_id"]].append(line)
            for run_id, run_lines in by_run.items():
                await self.sio.emit("logs", run_lines, room=[f"batch:run:{run_id}", "batch:all"])
        self.lines_received += len(lines)
        self.lines_emitted += len(singles)
        return len(singles)

    async def subscribe(self, sid: str, sub: Subscription) -> int:
        event = "logs" if sub.batch else "log"
        async with self.lock:
            room = _room(sub.run_id, sub.batch)
            await self.sio.enter_room(sid, room)
            self.subscriptions[sid].add(room)
            replayed = 0
            for run_id, after_seq in await self._replay_plan(sub):
                lines = await self.backlog.since(run_id, after_seq)
                # a run this node has not emitted yet: the replay covers the backlog, live lines follow it
                mark = self.seen[event].setdefault(run_id, max((line["seq"] for line in lines), default=0))
                lines = [line for line in lines if line["seq"] <= mark]
                replayed += len(lines)
                # ignore_queue: a replay is for this node's client only, not for the other nodes through Redis
                if sub.batch and lines:
                    await self.sio.emit("logs", lines, to=sid, ignore_queue=True)
                elif lines:
                    for line in lines:
                        await self.sio.emit("log", line, to=sid, ignore_queue=True)
        return replayed

    async def unsubscribe(self, sid: str, sub: Subscription) -> None:
        room = _room(sub.run_id, sub.batch)
        await self.sio.leave_room(sid, room)
        self.subscriptions[sid].discard(room)

    async def _replay_plan(self, sub: Subscription) -> list[tuple[str, int]]:
        if sub.run_id != ALL_RUNS:
            return [(sub.run_id, sub.after_seq if isinstance(sub.after_seq, int) else 0)]
        if sub.after_seq is None:
            return []
        runs = await self.backlog.recent_runs()
        if isinstance(sub.after_seq, int):
            return [(run_id, sub.after_seq) for run_id in runs]
        return [(run_id, sub.after_seq.get(run_id, 0)) for run_id in runs]

    def health(self) -> dict[str, int]:
        return {
            "clients": self.clients,
            "subscriptions": sum(len(rooms) for rooms in self.subscriptions.values()),
        }


class HubRedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager, with lines from other nodes emitted under the hub's lock and marks.

    Overrides the manager's handler of emits received from Redis (`_handle_emit`): it is where another
    node's lines reach this node's rooms, and the one place to keep `LogHub.seen` exact.
    """

    hub: LogHub | None = None

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        broadcast = event in ("log", "logs") and isinstance(message.get("room"), list)  # to run/all rooms
        if self.hub is None or message.get("host_id") == self.host_id or not broadcast:
            await super()._handle_emit(message)
            return
        async with self.hub.lock:
            # the emitted arguments travel as a list: [line] for `log`, [[line, ...]] for `logs`
            lines = message["data"] if event == "log" else message["data"][0]
            fresh = self.hub.fresh(event, lines)
            if fresh:
                await super()._handle_emit({**message, "data": fresh if event == "log" else [fresh]})


def _cors_origins(settings: Settings) -> str | list[str] | None:
    """python-socketio: None = same origin only, '*' = any; an empty list would turn checking off."""
    origins = settings.livelog_cors_origins
    if not origins:
        return None
    return "*" if ALL_RUNS in origins else origins


def create_socketio_app(settings: Settings) -> socketio.ASGIApp:
    manager: HubRedisManager | None = None
    backlog: Backlog
    if settings.redis_url:
        manager = HubRedisManager(settings.redis_url)
        backlog = RedisBacklog(settings.redis_url, settings.livelog_backlog_size)
    else:
        backlog = SqliteBacklog(settings.livelog_data_dir / "backlog.sqlite3", settings.livelog_backlog_size)
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=_cors_origins(settings), client_manager=manager)
    hub = LogHub(sio, backlog)
    if manager is not None:
        manager.hub = hub
    register_events(sio, hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if manager is not None and not sio.manager_initialized:
            # python-socketio starts listening to Redis at the first client; start now, so this node
            # follows what the other nodes emit (and its marks stay right) before anyone subscribes
            sio.manager_initialized = True
            manager.initialize()
        log.info(
            "[SOCKETIO_SERVER] Listening on %s:%s (backlog %d lines per run, message queue: %s)",
            settings.socketio_host,
            settings.socketio_port,
            settings.livelog_backlog_size,
            "redis" if manager else "none (single node)",
        )
        yield
        await hub.backlog.close()

    app = FastAPI(title="livelog Socket.IO server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hub = hub

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "healthy",
            "service": "socketio",
            "port": settings.socketio_port,
            "connections": hub.health(),
            "lines": {"received": hub.lines_received, "emitted": hub.lines_emitted},
        }

    viewer = files("livelog").joinpath("static/viewer.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        """A page that subscribes to every run and shows lines as they arrive."""
        return viewer

    @app.post("/internal/broadcast")
    async def broadcast(request: Request) -> JSONResponse:
        _check_token(request, settings.token)
        body = await read_capped_body(request, settings.livelog_max_body_bytes)
        try:
            batch = BroadcastBatch.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            return JSONResponse(status_code=422, content={"detail": errors})
        emitted = await hub.publish([line.model_dump() for line in batch.lines])
        return JSONResponse({"accepted": len(batch.lines), "emitted": emitted})

    return socketio.ASGIApp(sio, other_asgi_app=app)


def _check_token(request: Request, token: str | None) -> None:
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(status_code=401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})


def register_events(sio: socketio.AsyncServer, hub: LogHub) -> None:
    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        hub.clients += 1

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        hub.clients -= 1
        hub.subscriptions.pop(sid, None)

    @sio.event
    async def subscribe(sid: str, data: Any = None) -> dict[str, Any]:
        sub = _parse_subscription(data)
        if isinstance(sub, dict):
            return sub
        replayed = await hub.subscribe(sid, sub)
        return {"ok": True, "room": _room(sub.run_id, sub.batch), "replayed": replayed}

    @sio.event
    async def unsubscribe(sid: str, data: Any = None) -> dict[str, Any]:
        sub = _parse_subscription(data)
        if isinstance(sub, dict):
            return sub
        await hub.unsubscribe(sid, sub)
        return {"ok": True}


def _parse_subscription(data: Any) -> Subscription | dict[str, Any]:
    """The client's payload as a Subscription, or the refusal to acknowledge with."""
    try:
        return Subscription.model_validate(data)
    except ValidationError as exc:
        return {"ok": False, "error": _first_error(exc)}


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "payload"
    return f"{where}: {error['msg']}"
