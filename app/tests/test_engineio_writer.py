"""A WebSocket client's writer waits for its packets without a timer, delivers them all in order, and still ends.

Real clients over WebSocket, over long-polling and upgrading from one to the other, and a bare WebSocket client that
ignores the server's close, on livelog's Socket.IO server class served by uvicorn in the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
import socketio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from livelog.engineio_writer import TimerlessWriterSocket
from livelog.socketio_server import SocketIOServer
from livelog.testing import eventually, in_process_server

PACKETS = 200


def writers() -> list[asyncio.Task[Any]]:
    """python-engineio's writer tasks still running in this loop."""
    return [t for t in asyncio.all_tasks() if not t.done() and t.get_coro().__qualname__.endswith(".writer")]


async def test_every_packet_arrives_in_order_and_only_long_polling_waits_with_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timed_waits: list[str] = []  # the transport of each socket whose poll waited on its queue with a timer
    owner: dict[int, Any] = {}  # id of a socket's queue -> the socket
    real_wait_for = asyncio.wait_for

    def counting_wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
        if getattr(awaitable, "__qualname__", "") == "Queue.get":
            socket = owner.get(id(awaitable.cr_frame.f_locals["self"]))  # type: ignore[attr-defined]
            if socket is not None:  # not a client's own queue (python-engineio's client waits the same way)
                timed_waits.append("websocket" if socket.upgraded else "polling")
        return real_wait_for(awaitable, timeout)

    # pings every second: a long-polling client's disconnect waits for its pending GET, which the next ping answers
    sio = SocketIOServer(async_mode="asgi", ping_interval=1, ping_timeout=2)
    async with in_process_server(socketio.ASGIApp(sio)) as url:
        clients: dict[str, list[socketio.AsyncClient]] = {"websocket": [], "polling": [], "upgrading": []}
        received: dict[socketio.AsyncClient, list[int]] = {}
        for kind, transports in (("websocket", ["websocket"]), ("polling", ["polling"]), ("upgrading", None)):
            for _ in range(3):
                client = socketio.AsyncClient()
                got: list[int] = []
                client.on("n", got.append)
                await client.connect(url, transports=transports)
                clients[kind].append(client)
                received[client] = got
        upgraded = clients["websocket"] + clients["upgrading"]
        await eventually(lambda: all(c.eio.transport() == "websocket" for c in upgraded), what="the upgrades")
        sockets = list(sio.eio.sockets.values())
        assert len(sockets) == 9 and all(type(s) is TimerlessWriterSocket for s in sockets)
        owner.update((id(s.queue), s) for s in sockets)

        monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)
        for n in range(PACKETS):
            await sio.emit("n", n)
        await eventually(lambda: all(len(got) == PACKETS for got in received.values()), what="every packet")
        monkeypatch.undo()

        assert all(got == list(range(PACKETS)) for got in received.values())
        assert "websocket" not in timed_waits
        assert "polling" in timed_waits  # the count sees a poll with a timer: long-polling keeps python-engineio's

        await asyncio.gather(*(client.disconnect() for client in received))
        # python-engineio keeps a long-polling session until its ping timeout; the WebSocket ones end now
        await eventually(lambda: not writers() and all(not s.upgraded for s in sio.eio.sockets.values()))


async def test_a_writer_cancelled_closes_its_websocket() -> None:
    sio = SocketIOServer(async_mode="asgi")
    async with in_process_server(socketio.ASGIApp(sio)) as url:
        client = socketio.AsyncClient(reconnection=False)
        gone = asyncio.Event()
        client.on("disconnect", gone.set)
        await client.connect(url, transports=["websocket"])
        await eventually(lambda: len(writers()) == 1, what="the writer to start")
        writers()[0].cancel()
        await asyncio.wait_for(gone.wait(), 15)
        await eventually(lambda: not sio.eio.sockets and not writers(), what="the session to end")


async def test_a_closed_session_with_nothing_queued_gives_its_writer_nothing_at_once() -> None:
    # a writer that polls once its session is closed and its queue is empty (the close packet, if any, and the end
    # already taken) must end, not wait on the queue for a packet that never comes
    sio = SocketIOServer(async_mode="asgi")
    socket = TimerlessWriterSocket(sio.eio, "closed-sid")
    socket.upgraded, socket.closed = True, True
    assert await asyncio.wait_for(socket.poll(), 1) == []
    socket.queue.put_nowait(("a packet", "queued before the close"))
    assert await asyncio.wait_for(socket.poll(), 1) == [("a packet", "queued before the close")], "what is queued goes"


async def ignores_the_close(close: str) -> list[str]:
    """A bare Engine.IO client that joins, then keeps talking every 0.2 s whatever the server says (a pong, or with
    "ping timeout" a noop, never a pong); the server closes its session. Returns what the client received until
    its WebSocket closed."""
    sio = SocketIOServer(async_mode="asgi", ping_interval=1, ping_timeout=1)
    received: list[str] = []
    async with in_process_server(socketio.ASGIApp(sio)) as url, connect(ws_url(url)) as ws:
        received.append(str(await ws.recv()))  # the open packet
        await ws.send("40")
        received.append(str(await ws.recv()))  # the namespace's connect
        (eio_sid,) = sio.eio.sockets
        if close == "disconnect":
            await sio.eio.disconnect(eio_sid)  # what packet_guard.py does to a client that sends junk
        # close == "ping timeout": the client never answers the server's pings
        try:
            async with asyncio.timeout(10):
                while True:
                    await ws.send("6" if close == "ping timeout" else "3")
                    try:
                        received.append(str(await asyncio.wait_for(ws.recv(), 0.2)))
                    except TimeoutError:
                        pass
        except ConnectionClosed:
            pass
        await eventually(lambda: not writers(), what="the writer to end")
    return received


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


@pytest.mark.parametrize("close", ["disconnect", "ping timeout"])
async def test_a_session_the_server_closes_closes_its_websocket_though_the_client_talks_on(close: str) -> None:
    received = await ignores_the_close(close)
    assert received[0].startswith("0") and received[1].startswith("40")
    if close == "disconnect":
        assert received[-1] == "1"  # the close packet went out first
