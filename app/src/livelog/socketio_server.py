"""The Socket.IO server: the app factory, its HTTP routes and its Socket.IO event handlers.

One ASGI app: python-socketio handles `/socket.io/`, FastAPI the rest (`/` and `/viewer/`, the viewer page and its
files; `/health`, `/internal/broadcast`).
What happens to lines is the hub's job (hub.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import socketio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError
from redis.exceptions import RedisError

from livelog.auth import Grant, InvalidCredentials, bearer, is_one_of, verify_viewer_token
from livelog.backlog import Backlog, RedisBacklog, SqliteBacklog
from livelog.config import ANY_ORIGIN, Settings, reveal
from livelog.connect_deadline import ConnectDeadlineServer
from livelog.connection_limit import ConnectionLimit
from livelog.engineio_writer import TimerlessWriterServer, TimerlessWriterSocket
from livelog.http_body import BodyLimit, json_body, json_body_openapi
from livelog.http_errors import answer_errors
from livelog.hub import (
    ClientGone,
    HubRedisManager,
    LogHub,
    MessageQueueUnavailable,
    TooManySubscriptions,
    room,
)
from livelog.logs import TaggedLogger
from livelog.metrics import RequestTimer, ServiceMetrics, counter, gauge
from livelog.models import (
    BroadcastAccepted,
    BroadcastBatch,
    Connections,
    Event,
    LineCounts,
    SocketIOHealth,
    Subscription,
)
from livelog.origin_policy import OriginPolicy
from livelog.packet_guard import PacketGuardedServer
from livelog.room_emit import RoomEmitManager
from livelog.text_packet import FastJson, TextPacket
from livelog.viewer import ASSETS_PATH, viewer_assets, viewer_page
from livelog.websocket_protocol import StallGuardedWebSockets

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

Ack = dict[str, Any]


class SocketIOServer(PacketGuardedServer, ConnectDeadlineServer):
    """livelog's python-socketio server: malformed packets close their session (packet_guard.py), so does not
    connecting in time (connect_deadline.py), and WebSocket clients' writers wait without a timer
    (engineio_writer.py)."""

    def _engineio_server_class(self) -> type[TimerlessWriterServer]:
        return TimerlessWriterServer


def create_socketio_app(settings: Settings) -> RequestTimer:
    redis_url = reveal(settings.redis_url)
    manager = HubRedisManager(redis_url) if redis_url else RoomEmitManager()
    backlog: Backlog = (
        RedisBacklog(redis_url, settings.backlog_size)
        if redis_url
        else SqliteBacklog(
            settings.data_dir / "backlog.sqlite3",
            settings.backlog_size,
            max_lines=settings.retention_lines,
            max_age_s=settings.retention_days * 86400,
        )
    )
    origins = _cors_origins(settings)
    sio = SocketIOServer(
        async_mode="asgi",
        cors_allowed_origins=origins,
        client_manager=manager,
        serializer=TextPacket,
        json=FastJson,
        connect_timeout=settings.connect_timeout_seconds,
    )
    sio.eio.unread_seconds = settings.stalled_client_seconds
    metrics = ServiceMetrics(lambda: _metrics(hub, edge, origins, sio))
    lag = metrics.histogram("emit_lag_seconds", "From a line's timestamp (logged) to its emit here, per batch's oldest")
    hub = LogHub(
        sio,
        backlog,
        max_subscriptions=settings.max_subscriptions,
        max_replay_lines=settings.max_replay_lines,
        observe_lag=lag.observe,
    )
    if isinstance(manager, HubRedisManager):
        manager.hub = hub
    register_events(sio, hub, reveal(settings.viewer_token_secret))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if isinstance(manager, HubRedisManager) and not sio.manager_initialized:
            # python-socketio starts listening to Redis at the first client; start now, so this node
            # follows what the other nodes emit (and its marks stay right) before anyone subscribes
            sio.manager_initialized = True
            manager.initialize()
        log.info(
            "Listening on %s:%s (backlog %d lines per run, message queue: %s)",
            settings.socketio_host,
            settings.socketio_port,
            settings.backlog_size,
            "redis" if redis_url else "none (single node)",
        )
        yield
        await backlog.close()

    app = FastAPI(title="livelog Socket.IO server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    answer_errors(app, log)

    @app.exception_handler(MessageQueueUnavailable)
    @app.exception_handler(RedisError)
    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """Several nodes and Redis down: the lines are not taken, and the broadcaster sends them again."""
        log.warning("%s %s: Redis is unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "Redis is unavailable; send the lines again"}, status_code=503)

    viewer = viewer_page()

    @app.get("/health")
    async def health() -> SocketIOHealth:
        return SocketIOHealth(
            status="healthy",
            service="socketio",
            port=settings.socketio_port,
            connections=Connections(
                clients=hub.clients,
                subscriptions=hub.subscription_count(),
                open=edge.open,
                refused=edge.refused,
                dropped_unread=_dropped_unread(),
                refused_origins=origins.refused if isinstance(origins, OriginPolicy) else 0,
                closed_unconnected=sio.closed_unconnected.total,
            ),
            lines=LineCounts(received=hub.lines_received, emitted=hub.lines_emitted),
        )

    metrics.mount(app)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The log viewer: the runs its viewer token covers, each run's log, live."""
        return viewer

    app.mount(ASSETS_PATH, viewer_assets(), name="viewer")

    async def broadcaster(request: Request) -> None:  # async: FastAPI runs a plain def in a thread, per batch
        _check_bearer(request, reveal(settings.broadcast_token))

    @app.post(
        "/internal/broadcast",
        dependencies=[Depends(broadcaster)],  # before the body is read: no token, 401 whatever the body
        responses={
            401: {"description": "No broadcast token, or not the one set"},
            413: {},
            503: {
                "description": "The backlog cannot take the lines now (several nodes and Redis is unavailable, or "
                "another process holds the SQLite backlog's lock): they were not taken; send them again"
            },
        },
        openapi_extra=json_body_openapi(BroadcastBatch),
    )
    async def broadcast(batch: Annotated[BroadcastBatch, Depends(json_body(BroadcastBatch))]) -> BroadcastAccepted:
        emitted = await hub.publish(batch.lines)
        return BroadcastAccepted(accepted=len(batch.lines), emitted=emitted)

    edge = ConnectionLimit(socketio.ASGIApp(sio, other_asgi_app=app), settings.max_connections, "/socket.io/")
    return RequestTimer(edge, metrics)


def _dropped_unread() -> int:
    """Clients dropped for leaving their output unread: WebSockets, and long-polling sessions."""
    return StallGuardedWebSockets.dropped + TimerlessWriterSocket.dropped_unread


def _metrics(hub: LogHub, edge: ConnectionLimit, origins: str | OriginPolicy, sio: SocketIOServer) -> Iterator[Metric]:
    yield counter(
        "lines_received",
        "Lines the broadcaster posted to this node (those from other nodes through Redis: lines_relayed)",
        hub.lines_received,
    )
    yield counter(
        "lines_emitted",
        "Of those, the lines new to this node, which it emitted (as `log` events only where someone takes them)",
        hub.lines_emitted,
    )
    yield counter(
        "lines_relayed",
        "Lines other nodes published that reached this node through Redis, new here, and emitted to its rooms",
        hub.lines_relayed,
    )
    yield gauge("clients", "Socket.IO clients connected", hub.clients)
    yield gauge("subscriptions", "Subscriptions of the connected clients", hub.subscription_count())
    yield gauge("connections_open", "HTTP requests and WebSockets open under /socket.io/", edge.open)
    yield counter("connections_refused", "Connections refused at LIVELOG_MAX_CONNECTIONS", edge.refused)
    yield counter(
        "websockets_dropped_unread",
        "WebSockets dropped because the client left its output unread",
        StallGuardedWebSockets.dropped,
    )
    yield counter(
        "polling_sessions_dropped_unread",
        "Long-polling sessions closed because the client left its output unread",
        TimerlessWriterSocket.dropped_unread,
    )
    refused_origins = origins.refused if isinstance(origins, OriginPolicy) else 0
    yield counter("origins_refused", "Handshakes from a page whose origin is not allowed", refused_origins)
    yield counter("packets_malformed", "Sessions closed for a packet that is not Socket.IO", sio.malformed.total)
    yield counter(
        "sessions_closed_unconnected",
        "Sessions closed for not connecting within LIVELOG_CONNECT_TIMEOUT_SECONDS (no viewer token, a refused one)",
        sio.closed_unconnected.total,
    )


def _cors_origins(settings: Settings) -> str | OriginPolicy:
    """python-socketio: '*' = any origin; else the policy (the server's own origin and the listed ones)."""
    origins = settings.cors_origins
    return ANY_ORIGIN if ANY_ORIGIN in origins else OriginPolicy(origins)


def _check_bearer(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = bearer(request.headers.get("authorization"))
    if given is None or not is_one_of([token], given):
        raise HTTPException(status_code=401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})


SubscriptionHandler = Callable[[str, Subscription], Awaitable[Ack]]


def _takes_subscription(handler: SubscriptionHandler) -> Callable[..., Awaitable[Ack]]:
    """An event handler for a Subscription payload; a payload that is not one is acknowledged as refused."""

    async def handle(sid: str, *payload: Any) -> Ack:
        if len(payload) > 1:
            return {"ok": False, "error": f"payload: one object expected, got {len(payload)} arguments"}
        try:
            sub = Subscription.model_validate(payload[0] if payload else None)
        except ValidationError as exc:
            return {"ok": False, "error": _first_error(exc)}
        return await handler(sid, sub)

    return handle


def _first_error(exc: ValidationError) -> str:
    """The problem to tell the client: of a union's branches, the one that got furthest (a mapping's bad key, not
    "not an int"); its place without pydantic's names of the branches and validators (`function-before[...]`)."""
    error = max(exc.errors(include_url=False), key=lambda error: len(error["loc"]))
    where = ".".join(str(part) for part in error["loc"] if "[" not in str(part)) or "payload"
    return f"{where}: {error['msg']}"


def register_events(sio: socketio.AsyncServer, hub: LogHub, viewer_token_secret: str | None = None) -> None:
    """The Socket.IO events. With a viewer token secret, a client connects with `auth: {"token": ...}`, may subscribe
    only to the runs its token covers, and is disconnected when the token expires (it reconnects with a new one)."""
    expiries: dict[str, asyncio.Task[None]] = {}

    def sent_by_the_client(sid: str) -> bool:
        # a client can emit events named `connect` and `disconnect` too: python-socketio hands them to these
        # handlers, while the real ones arrive when the sid is pending, so not yet or no longer connected
        return bool(sio.manager.is_connected(sid, "/"))

    async def end_at_expiry(sid: str, expires: float) -> None:
        await asyncio.sleep(max(0.0, expires - time.time()))
        log.info("Disconnecting %s: its viewer token expired", sid)
        await sio.disconnect(sid)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if sent_by_the_client(sid):
            return
        if viewer_token_secret is not None:
            token = auth.get("token") if isinstance(auth, dict) else None
            try:
                grant = verify_viewer_token(viewer_token_secret, token)
            except InvalidCredentials as exc:
                log.info("Refused a connection: %s", exc)
                raise socketio.exceptions.ConnectionRefusedError("a valid viewer token is required") from None
            await sio.save_session(sid, {"grant": grant})
            expiries[sid] = asyncio.create_task(end_at_expiry(sid, grant.expires))
        hub.connected(sid)

    async def disconnect(sid: str, reason: Any = None) -> None:
        if sent_by_the_client(sid):
            return
        if expiry := expiries.pop(sid, None):
            expiry.cancel()
        hub.disconnected(sid)

    async def subscribe(sid: str, sub: Subscription) -> Ack:
        if not sio.manager.is_connected(sid, "/"):  # it went while its event waited: no session, no room
            return {"ok": False, "error": "not connected"}
        if viewer_token_secret is not None:
            grant: Grant = (await sio.get_session(sid))["grant"]
            if grant.expires <= time.time():
                return {"ok": False, "error": "the viewer token has expired"}
            if not grant.allows(sub.run_id):
                return {"ok": False, "error": f"run_id: the viewer token does not cover {sub.run_id}"}
        try:
            replay = await hub.subscribe(sid, sub)
        except TooManySubscriptions as exc:
            return {"ok": False, "error": str(exc)}
        except ClientGone:
            return {"ok": False, "error": "not connected"}
        except (RedisError, sqlite3.Error) as exc:
            log.warning("A subscribe to %s failed: the backlog could not be read (%s)", sub.run_id, exc)
            return {"ok": False, "error": "the backlog could not be read; subscribe again"}
        joined = room(sub.run_id, Event.of(sub.batch))
        return {"ok": True, "room": joined, "replayed": replay.lines, "runs": replay.runs}

    async def unsubscribe(sid: str, sub: Subscription) -> Ack:
        await hub.unsubscribe(sid, sub)
        return {"ok": True}

    async def unknown(event: Any, _sid: str, *_args: Any) -> Ack:
        """Any other event: python-socketio would drop it, and a client waiting for its ack would wait for good."""
        return {"ok": False, "error": f"unknown event {str(event)[:64]!r}: the events are subscribe and unsubscribe"}

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("subscribe", _takes_subscription(subscribe))
    sio.on("unsubscribe", _takes_subscription(unsubscribe))
    sio.on("*", unknown)
