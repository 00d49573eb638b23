"""RoomIndexManager keeps exactly python-socketio's rooms, and a client that goes leaves nothing behind.

The first test drives python-socketio's own manager and livelog's through the same random enters, leaves, closes,
connects and disconnects, and compares everything they hold after each step; the second uses a real server and real
clients over WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable
from typing import Any

import socketio

from livelog.room_index import RoomIndexManager
from livelog.testing import eventually, in_process_server

NAMESPACES = ["/", "/other"]
NOBODY_HERE = "/empty"  # a namespace no client joins: python-socketio's disconnect returns at once there
ROOMS = ["run:a", "run:b", "all"]


def server_with(manager: socketio.AsyncManager) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    ids = itertools.count()
    sio.eio.generate_id = lambda: f"sid{next(ids)}"  # both managers name their clients alike
    return sio


def state(manager: socketio.AsyncManager, clients: list[tuple[str, str]]) -> object:
    rooms = {ns: {room: dict(sids) for room, sids in by_room.items()} for ns, by_room in manager.rooms.items()}
    per_client = {(ns, sid): sorted(manager.get_rooms(sid, ns)) for ns, sid in clients}
    pending = (manager.pending_connect, manager.pending_disconnect)
    return rooms, per_client, pending, sorted(manager.callbacks)


async def outcome(call: Awaitable[Any]) -> object:
    try:
        return await call
    except Exception as exc:  # both managers must refuse the same steps the same way
        return type(exc), str(exc)


async def test_it_holds_what_python_socketio_holds_through_random_steps() -> None:
    plain, indexed = socketio.AsyncManager(), RoomIndexManager()
    managers = [server_with(plain).manager, server_with(indexed).manager]
    chance = random.Random(11)
    present: list[tuple[str, str]] = []  # (namespace, sid), connected or only pre-connected
    eio_sids: list[str] = []
    steps = ["connect", "connect", "pre_connect", "enter", "enter", "leave", "close", "disconnect", "odd"]
    for step in range(800):
        action = chance.choice(steps)
        touched: list[tuple[str, str]] = []
        if action in ("connect", "pre_connect") or not present:
            ns = chance.choice(NAMESPACES)
            call = "pre_connect" if action == "pre_connect" else "connect"
            # now and then an Engine.IO session already in the namespace: refused, no new client (python-socketio's
            # own connect() does not await that refusal, so only pre_connect is asked)
            reuse = call == "pre_connect" and eio_sids and chance.random() < 0.3
            eio_sid = chance.choice(eio_sids) if reuse else f"eio{step}"
            eio_sids.append(eio_sid)
            made = [await outcome(getattr(manager, call)(eio_sid, ns)) for manager in managers]
            assert made[0] == made[1], f"step {step}: {call} gave {made}"
            if isinstance(made[0], str):
                present.append((ns, made[0]))
                if chance.random() < 0.3:  # a callback awaiting an answer, which a disconnect drops
                    for manager in managers:
                        manager._generate_ack_id(made[0], print)
        elif action in ("enter", "leave"):
            ns, sid = chance.choice(present)
            # now and then python-socketio's room of all clients, or another client's own room (refused)
            room = chance.choice([*ROOMS, *ROOMS, None, chance.choice(present)[1]])
            results = [await outcome(getattr(manager, f"{action}_room")(sid, ns, room)) for manager in managers]
            assert results[0] == results[1], f"step {step}: {action} {room} gave {results}"
            touched.append((ns, sid))
        elif action == "close":
            ns, room = chance.choice(NAMESPACES), chance.choice([*ROOMS, chance.choice(present)[1]])
            results = [await outcome(manager.close_room(room, ns)) for manager in managers]
            assert results[0] == results[1], f"step {step}: close {room} gave {results}"
        elif action == "disconnect":
            ns, sid = present.pop(chance.randrange(len(present)))
            for manager in managers:
                manager.pre_disconnect(sid, ns)
                await manager.disconnect(sid, ns)
            touched.append((ns, sid))
        else:  # a client disconnected where it is not: a namespace nobody joined, or again after it went
            ns, sid = chance.choice([(NOBODY_HERE, chance.choice(present)[1]), ("/", f"sid{step}")])
            for manager in managers:
                await manager.disconnect(sid, ns)
        clients = [*present, *touched]
        assert state(indexed, clients) == state(plain, clients), f"step {step} ({action}): the managers differ"
    assert indexed.rooms_of.keys() == set(present), "only clients still here are indexed"


async def test_a_disconnect_does_not_look_through_every_room() -> None:
    class NoScan(dict):  # type: ignore[type-arg]
        def copy(self) -> dict:  # type: ignore[type-arg]
            raise AssertionError("a disconnect looked through every room of the namespace")

        items = copy  # type: ignore[assignment]

    manager = RoomIndexManager()
    server_with(manager)
    sids = [await manager.connect(f"eio{n}", "/") for n in range(3)]
    await manager.enter_room(sids[0], "/", "run:a")
    manager.rooms["/"] = NoScan(manager.rooms["/"])
    assert manager.get_rooms(sids[0], "/") == [sids[0], "run:a"]
    await manager.disconnect(sids[0], "/")
    assert sids[0] not in manager.rooms["/"][None] and "run:a" not in manager.rooms["/"]


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
