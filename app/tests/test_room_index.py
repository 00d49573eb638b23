"""RoomIndexManager keeps exactly python-socketio's rooms, and a client that goes leaves nothing behind.

The first test drives python-socketio's own manager and livelog's through the same random enters, leaves, closes,
connects and disconnects, and compares everything they hold after each step; the second uses a real server and real
clients over WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import socketio

from livelog.room_index import RoomIndexManager
from livelog.testing import eventually, in_process_server

NAMESPACES = ["/", "/other"]
ROOMS = ["run:a", "run:b", "all"]


def server_with(manager: socketio.AsyncManager) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    ids = itertools.count()
    sio.eio.generate_id = lambda: f"sid{next(ids)}"  # both managers name their clients alike
    return sio


def state(manager: socketio.AsyncManager, sids: list[str]) -> object:
    rooms = {ns: {room: dict(clients) for room, clients in by_room.items()} for ns, by_room in manager.rooms.items()}
    per_client = {(ns, sid): sorted(manager.get_rooms(sid, ns)) for ns in NAMESPACES for sid in sids}
    pending = (manager.pending_connect, manager.pending_disconnect)
    return rooms, per_client, pending, sorted(manager.callbacks)


async def test_it_holds_what_python_socketio_holds_through_random_steps() -> None:
    plain, indexed = socketio.AsyncManager(), RoomIndexManager()
    servers = [server_with(plain), server_with(indexed)]
    chance = random.Random(11)
    connected: list[tuple[str, str]] = []  # (namespace, sid)
    sids: list[str] = []
    for step in range(2_000):
        action = chance.choice(["connect", "connect", "enter", "enter", "leave", "close", "disconnect"])
        if action == "connect" or not connected:
            ns, eio_sid = chance.choice(NAMESPACES), f"eio{step}"
            made = [await server.manager.connect(eio_sid, ns) for server in servers]
            assert made[0] == made[1]
            connected.append((ns, made[0]))
            sids.append(made[0])
            if chance.random() < 0.3:  # a callback awaiting an answer, which a disconnect drops
                for server in servers:
                    server.manager._generate_ack_id(made[0], print)
        elif action == "enter":
            ns, sid = chance.choice(connected)
            room = chance.choice(ROOMS)
            for server in servers:
                await server.manager.enter_room(sid, ns, room)
        elif action == "leave":
            ns, sid = chance.choice(connected)
            room = chance.choice(ROOMS)
            for server in servers:
                await server.manager.leave_room(sid, ns, room)
        elif action == "close":
            ns, room = chance.choice(NAMESPACES), chance.choice(ROOMS)
            for server in servers:
                await server.manager.close_room(room, ns)
        else:
            ns, sid = connected.pop(chance.randrange(len(connected)))
            for server in servers:
                server.manager.pre_disconnect(sid, ns)
                await server.manager.disconnect(sid, ns)
        ours, theirs = state(indexed, sids), state(plain, sids)
        assert ours == theirs, f"step {step} ({action}): the managers differ"
        for ns, sid in connected:
            assert indexed.is_connected(sid, ns) == plain.is_connected(sid, ns)
    assert indexed.rooms_of.keys() == {(ns, sid) for ns, sid in connected}, "only connected clients are indexed"


async def test_clients_that_leave_leave_no_room_behind() -> None:
    manager = RoomIndexManager()
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, rooms: list[str]) -> list[str]:
        for name in rooms:
            await sio.enter_room(sid, name)
        return sorted(sio.rooms(sid))

    async with in_process_server(socketio.ASGIApp(sio)) as url:
        clients = []
        for n in range(20):
            client = socketio.AsyncClient()
            await client.connect(url, transports=["websocket"])
            rooms = ["all", f"run:{n % 3}"]
            assert await client.call("join", rooms) == sorted([*rooms, client.get_sid()])
            clients.append(client)
        assert len(manager.rooms_of) == 20
        assert set(manager.rooms["/"]) == {None, "all", "run:0", "run:1", "run:2"} | {c.get_sid() for c in clients}
        await asyncio.gather(*(client.disconnect() for client in clients))
        await eventually(lambda: not manager.rooms and not manager.rooms_of)
