"""The hub's once-and-in-order rule, in process: fast tests beside the end-to-end ones.

The server is real (python-socketio on uvicorn, in this test's event loop) and so are the clients and Redis;
what is skipped is only the process start-up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import socketio

from livelog.backlog import SqliteBacklog
from livelog.hub import (
    MAX_TRACKED_RUNS,
    Event,
    HubRedisManager,
    LogHub,
    MessageQueueUnavailable,
    room,
    rooms_of_line,
)
from livelog.models import ALL_RUNS
from livelog.room_emit import RoomEmitManager
from livelog.socketio_server import register_events
from livelog.sqlite import ROWS_PER_INSERT
from livelog.subscriber import LogSubscriber
from livelog.testing import eventually, free_port, in_process_server, make_lines


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[LogHub]:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=1000)
    yield LogHub(socketio.AsyncServer(async_mode="asgi", client_manager=RoomEmitManager()), backlog)
    await backlog.close()


@pytest.fixture
async def served_hub(hub: LogHub) -> AsyncIterator[tuple[LogHub, str]]:
    """The hub behind a real Socket.IO server on a free loopback port."""
    register_events(hub.sio, hub)
    async with in_process_server(socketio.ASGIApp(hub.sio)) as url:
        yield hub, url


def test_rooms() -> None:
    assert room("r1", Event.LINE) == "run:r1" and room(ALL_RUNS, Event.LINE) == "all"
    assert room("r1", Event.BATCH) == "batch:run:r1" and room(ALL_RUNS, Event.BATCH) == "batch:all"
    assert rooms_of_line("r1", Event.BATCH) == ["batch:run:r1", "batch:all"]


def test_marks_let_each_line_out_once(hub: LogHub) -> None:
    assert [line["seq"] for line in hub.advance_marks(Event.LINE, make_lines("a", 1, 5))] == [1, 2, 3, 4, 5]
    assert [line["seq"] for line in hub.advance_marks(Event.LINE, make_lines("a", 3, 8))] == [6, 7, 8]
    assert hub.advance_marks(Event.LINE, make_lines("a", 1, 8)) == [], "a retried batch moves nothing"
    assert [line["seq"] for line in hub.advance_marks(Event.LINE, make_lines("b", 1, 2))] == [1, 2], "runs apart"
    assert len(hub.advance_marks(Event.BATCH, make_lines("a", 1, 8))) == 8, "events have marks of their own"
    assert hub.marks == {Event.LINE: {"a": 8, "b": 2}, Event.BATCH: {"a": 8}}


def test_the_marks_of_the_most_active_runs_are_kept(hub: LogHub) -> None:
    hub.advance_marks(Event.LINE, make_lines("busy", 1, 1))
    for number in range(MAX_TRACKED_RUNS - 1):
        hub.advance_marks(Event.LINE, make_lines(f"once-{number}", 1, 1))
    hub.advance_marks(Event.LINE, make_lines("busy", 2, 2))  # the first run with a mark, and active again
    hub.advance_marks(Event.LINE, make_lines("newest", 1, 1))
    assert len(hub.marks[Event.LINE]) == MAX_TRACKED_RUNS
    assert hub.marks[Event.LINE]["busy"] == 2, "a run still logging keeps its mark"
    assert "once-0" not in hub.marks[Event.LINE], "the quietest run went"


async def test_a_run_quiet_past_the_backlogs_age_is_forgotten_so_a_new_run_with_its_id_goes_out(
    tmp_path: Path,
) -> None:
    """The API holds a removed run's id longer than a node remembers the run: a new run with that id, lines from
    seq 1, must go out, not be taken for a retry of the old one."""
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=1000, check_every_s=0, max_age_s=0.2)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=RoomEmitManager())
    hub = LogHub(sio, backlog, forget_after_s=0.2)
    assert await hub.publish(make_lines("nightly", 1, 5)) == 5
    assert await hub.publish(make_lines("nightly", 1, 3)) == 0, "a retry within the age goes out once"
    await asyncio.sleep(0.3)
    again = make_lines("nightly", 1, 3)
    assert await hub.publish(again) == 3
    assert hub.marks == {Event.LINE: {"nightly": 3}, Event.BATCH: {"nightly": 3}}
    assert await backlog.since("nightly", 0) == again, "the backlog replays the new run, not the old one"
    await backlog.close()


async def test_publish_emits_only_lines_not_emitted_yet(hub: LogHub) -> None:
    assert await hub.publish(make_lines("p", 1, 10)) == 10
    assert await hub.publish(make_lines("p", 5, 12)) == 2
    assert await hub.publish(make_lines("p", 1, 12)) == 0
    assert (hub.lines_received, hub.lines_emitted) == (30, 12)
    assert [line["seq"] for line in await hub.backlog.since("p", 0)] == list(range(1, 13)), "the backlog has each once"


async def test_backlog_keeps_the_first_copy_of_a_retried_line_across_statements(hub: LogHub) -> None:
    # more lines than one INSERT statement takes, retried from inside the first statement with other timestamps
    stored, last = 2 * ROWS_PER_INSERT + 50, 3 * ROWS_PER_INSERT + 50
    first, retried = make_lines("r", 1, stored), make_lines("r", ROWS_PER_INSERT + 1, last)
    await hub.backlog.add(first)
    await hub.backlog.add([{**line, "ts": line["ts"] + 1} for line in retried])
    kept = await hub.backlog.since("r", 0)
    assert [line["seq"] for line in kept] == list(range(1, last + 1))
    assert kept[:stored] == first, "a line stored before stays as it was"
    assert kept[stored:] == [{**line, "ts": line["ts"] + 1} for line in retried[-(last - stored) :]]


@pytest.mark.parametrize("batch", [False, True, "both"])
async def test_clients_joining_while_lines_flow_get_each_line_once_in_order(
    served_hub: tuple[LogHub, str], batch: bool | str
) -> None:
    """Subscribers join at random moments of a run published in retried, overlapping batches: all taking single
    `log` events, all `logs` batches, or both kinds on the run at once."""
    hub, url = served_hub
    total, rng = 400, random.Random(7)

    async def publisher() -> None:
        seq = 0
        while seq < total:
            size = rng.randint(1, 25)
            await hub.publish(make_lines("flow", max(1, seq - rng.randint(0, 5)), min(total, seq + size)))
            seq += size
            await asyncio.sleep(0.001)

    clients: list[LogSubscriber] = []

    async def joiner() -> None:
        for number in range(6):
            await asyncio.sleep(rng.uniform(0, 0.05))
            batched = number % 2 == 1 if batch == "both" else bool(batch)
            clients.append(await LogSubscriber(url, "flow", batch=batched).connect())

    await asyncio.gather(publisher(), joiner())
    for client in clients:
        await eventually(lambda client=client: client.last_seq() == total, what="every line at every client")
        assert client.seqs() == list(range(1, total + 1)), "each line once, in order"
        assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
        await client.close()


async def test_the_redis_manager_hook_sees_other_nodes_lines(hub: LogHub, redis_url: str) -> None:
    """Pins python-socketio's private `_handle_emit`: another node's emits must reach it, shaped as the hub expects.

    If a python-socketio upgrade stops calling it, or changes the message, the marks below do not move.
    """
    manager = HubRedisManager(redis_url, channel="pin")
    hub.sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    manager.hub = hub
    manager.initialize()
    other_node = socketio.AsyncRedisManager(redis_url, channel="pin", write_only=True)
    lines = make_lines("pin", 1, 3)
    try:
        async with asyncio.timeout(10):
            while hub.marks[Event.LINE].get("pin") != 3 or hub.marks[Event.BATCH].get("pin") != 3:
                for line in lines:  # until this node's subscription to Redis is in place; the marks make it once
                    await other_node.emit(Event.LINE, line, room=rooms_of_line("pin", Event.LINE))
                await other_node.emit(Event.BATCH, lines, room=rooms_of_line("pin", Event.BATCH))
                await asyncio.sleep(0.05)
    finally:
        manager.thread.cancel()
    assert hub.marks[Event.LINE] == {"pin": 3} and hub.marks[Event.BATCH] == {"pin": 3}


async def test_lines_redis_did_not_take_are_not_counted_as_emitted(hub: LogHub) -> None:
    """Several nodes, and Redis gone after the backlog took a batch: python-socketio only logs that its publish
    failed. Here the publish fails, so the broadcaster sends the batch again, and the marks go back to where they
    were, so that retry emits the lines again (to the other nodes through Redis)."""
    manager = HubRedisManager(f"redis://127.0.0.1:{free_port()}/0", channel="down")  # nothing listens there
    hub.sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    manager.hub = hub
    hub.marks[Event.LINE]["q"] = hub.marks[Event.BATCH]["q"] = 2  # lines 1 and 2 went out before
    with pytest.raises(MessageQueueUnavailable):
        await hub.publish(make_lines("q", 1, 5))
    assert hub.marks == {Event.LINE: {"q": 2}, Event.BATCH: {"q": 2}}
    assert hub.lines_received == 0


async def test_a_subscribe_that_waited_while_its_client_left_keeps_nothing(served_hub: tuple[LogHub, str]) -> None:
    """A subscribe waits for the hub's lock (an emit holds it); its client disconnects meanwhile: no subscription,
    no room and no exception are left behind."""
    hub, url = served_hub
    client = socketio.AsyncClient()
    await client.connect(url)
    await eventually(lambda: hub.clients == 1, what="the client to connect")
    async with hub.lock:
        await client.emit("subscribe", {"run_id": "left", "batch": True})
        await asyncio.sleep(0.2)  # the subscribe is waiting for the lock
        await client.disconnect()
        await eventually(lambda: hub.clients == 0, what="the server to see the client go")
    await asyncio.sleep(0.2)  # the subscribe ran
    assert hub.subscriptions == {} and hub.subscription_count() == 0
    assert not hub.sio.manager.rooms.get("/", {}).get(room("left", Event.BATCH))


async def test_subscribes_to_runs_unknown_here_take_no_room_in_the_marks(served_hub: tuple[LogHub, str]) -> None:
    hub, url = served_hub
    await hub.publish(make_lines("known", 1, 3))
    client = await LogSubscriber(url, "known", batch=True).connect()
    for number in range(50):
        ack = await client.sio.call("subscribe", {"run_id": f"nobody-{number}", "batch": True}, timeout=5)
        assert ack["ok"] and ack["runs"][f"nobody-{number}"] == {"first_seq": 1, "last_seq": 0}
    assert hub.marks[Event.BATCH] == {"known": 3}, "any client may name any run: those it made up leave no mark"
    await client.close()


async def test_a_subscribe_whose_backlog_fails_is_refused_and_joins_nothing(served_hub: tuple[LogHub, str]) -> None:
    hub, url = served_hub
    client = await LogSubscriber(url, "elsewhere", batch=True).connect()
    await hub.backlog.close()  # every read of it fails now
    ack = await client.sio.call("subscribe", {"run_id": "broken", "after_seq": 0, "batch": True}, timeout=5)
    assert ack == {"ok": False, "error": "the backlog could not be read; subscribe again"}
    assert room("broken", Event.BATCH) not in hub.subscriptions[client.sio.get_sid()], "not in the room either"
    await client.close()
