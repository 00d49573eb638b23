"""RoomEmitManager: an event to rooms reaches each client in them once, in order, and no one else.

Real python-socketio server on uvicorn in this test's event loop, real python-socketio clients over WebSocket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import socketio

from livelog.room_emit import RoomEmitManager
from livelog.testing import eventually, in_process_server

EVENTS = 200


@pytest.fixture
async def server() -> AsyncIterator[tuple[socketio.AsyncServer, str]]:
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=RoomEmitManager())

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, rooms: list[str]) -> bool:
        for name in rooms:
            await sio.enter_room(sid, name)
        return True

    async with in_process_server(socketio.ASGIApp(sio)) as url:
        yield sio, url


async def client(url: str, rooms: list[str], received: list[object]) -> socketio.AsyncClient:
    sio = socketio.AsyncClient()
    sio.on("line", lambda *arguments: received.append(arguments[0] if len(arguments) == 1 else arguments))
    await sio.connect(url, transports=["websocket"])
    assert await sio.call("join", rooms) is True
    return sio


async def test_each_client_in_the_rooms_gets_every_event_once_in_order(
    server: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = server
    in_both, in_run, in_all, elsewhere = [], [], [], []  # type: ignore[var-annotated]
    clients = [
        await client(url, ["run:a", "all"], in_both),
        await client(url, ["run:a"], in_run),
        await client(url, ["all"], in_all),
        await client(url, ["run:b"], elsewhere),
    ]
    for n in range(EVENTS):
        await sio.emit("line", {"seq": n}, room=["run:a", "all"])
    await sio.emit("line", ({"seq": "two"}, "arguments"), room="run:b")  # a tuple: several arguments
    expected = [{"seq": n} for n in range(EVENTS)]
    await eventually(lambda: len(in_both) + len(in_run) + len(in_all) >= 3 * EVENTS and elsewhere != [])
    await asyncio.sleep(0.2)  # anything extra would have arrived by now
    assert in_both == expected, "a client in both rooms gets each event once"
    assert in_run == expected and in_all == expected
    assert elsewhere == [({"seq": "two"}, "arguments")], "a tuple goes as several arguments, to its room only"
    for each in clients:
        await each.disconnect()


async def test_emits_with_a_callback_or_a_skipped_client_go_python_socketios_way(
    server: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = server
    first, second = [], []  # type: ignore[var-annotated]
    one = await client(url, ["r"], first)
    two = await client(url, ["r"], second)
    skipped = next(sid for sid, _ in sio.manager.get_participants("/", "r"))
    await sio.emit("line", "not to the skipped one", room="r", skip_sid=skipped)
    await eventually(lambda: len(first) + len(second) == 1)
    await asyncio.sleep(0.2)
    assert sorted(map(len, [first, second])) == [0, 1]
    await one.disconnect()
    await two.disconnect()
