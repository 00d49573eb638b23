"""Fan-out: lines to rooms, the backlog replayed to new subscribers, each line once and in order on every node.

Rooms: `run:<id>` and `all` get one `log` event per line; `batch:run:<id>` and `batch:all` one `logs` event per
batch (a list), for clients that subscribed with `batch: true`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from livelog.backlog import RETENTION_SECONDS, Backlog
from livelog.models import ALL_RUNS, Event, LogLine, Subscription
from livelog.room_emit import RoomEmitManager

# runs whose highest emitted seq a node remembers, and for how long after their last line: as long as any
# backlog keeps a run's lines, and no longer (the API holds a removed run's id for longer, so a new run with that
# id starts from nothing here)
MAX_TRACKED_RUNS = 10_000
FORGET_QUIET_RUNS_S = RETENTION_SECONDS
# lines per `logs` event of a replay
REPLAY_CHUNK = 200


EVENTS = frozenset(Event)


def room(run_id: str, event: Event) -> str:
    """The room of a run (or of ALL_RUNS) for clients that receive `event`."""
    name = "all" if run_id == ALL_RUNS else f"run:{run_id}"
    return f"batch:{name}" if event is Event.BATCH else name


def rooms_of_line(run_id: str, event: Event) -> list[str]:
    """Every room a line of `run_id` goes to as `event`."""
    return [room(run_id, event), room(ALL_RUNS, event)]


class MessageQueueUnavailable(Exception):
    """Redis did not take an emit of lines, so the other nodes did not get them (python-socketio only logs it)."""


class ClientGone(Exception):
    """The client disconnected before its subscribe was handled."""


class TooManySubscriptions(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"run_id: this connection has {limit} subscriptions, the most it may have")


@dataclass
class Replay:
    """What a subscribe replayed: per run, the seqs `first_seq..last_seq` went to the client (none when
    `first_seq > last_seq`); lines above `last_seq` come live. Lines between the client's `after_seq` and
    `first_seq` were not sent (the backlog no longer has them, or the replay bound was reached): the API has them."""

    lines: int = 0
    runs: dict[str, dict[str, int]] = field(default_factory=dict)


class LogHub:
    """Fans lines out to rooms and replays the backlog to new subscribers, each line once and in order.

    `marks[event][run]` is the highest seq this node has emitted to its rooms as `event`. A line goes out only
    when its seq is above that mark, so a batch the broadcaster retries, here or on another node, is not
    emitted twice, and a line another node stored but never emitted still goes out. A subscriber joins its
    room and is replayed the backlog up to the mark, all under `lock`, which every emit of lines also takes:
    what went out before the join comes in the replay, what goes out after it comes live. With several nodes,
    lines published by another node reach this one through Redis; HubRedisManager takes the same lock and
    the same marks for them.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        backlog: Backlog,
        max_subscriptions: int = 100,
        max_replay_lines: int = 1000,
        observe_lag: Callable[[float], None] | None = None,
        forget_after_s: float = FORGET_QUIET_RUNS_S,
    ) -> None:
        self.sio = sio
        self.observe_lag = observe_lag
        self.backlog = backlog
        self.max_subscriptions = max_subscriptions
        self.max_replay_lines = max_replay_lines
        self.lock = asyncio.Lock()
        self.marks: dict[Event, dict[str, int]] = {event: {} for event in Event}
        # when each run with a mark last moved one (monotonic), the quietest first
        self.last_moved: dict[str, float] = {}
        self.forget_after_s = forget_after_s
        self.clients = 0
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        self.lines_received = 0
        self.lines_emitted = 0
        self.lines_relayed = 0

    def advance_marks(self, event: Event, lines: list[LogLine]) -> list[LogLine]:
        """Move the marks of `event` past `lines` (call under `lock`); return the lines that moved them."""
        self.forget_quiet_runs()
        marks = self.marks[event]
        moved = []
        for line in lines:
            if line["seq"] > marks.get(line["run_id"], 0):
                marks[line["run_id"]] = line["seq"]
                moved.append(line)
        self._moved({line["run_id"] for line in moved})
        return moved

    def forget_quiet_runs(self) -> None:
        """Drop the marks of runs quiet for `forget_after_s`, and of the quietest while more than MAX_TRACKED_RUNS
        have marks (call under `lock`)."""
        last_moved = self.last_moved
        cutoff = time.monotonic() - self.forget_after_s
        while last_moved and (len(last_moved) > MAX_TRACKED_RUNS or next(iter(last_moved.values())) <= cutoff):
            run_id = next(iter(last_moved))
            del last_moved[run_id]
            for marks in self.marks.values():
                marks.pop(run_id, None)

    def _moved(self, run_ids: set[str]) -> None:
        now = time.monotonic()
        for run_id in run_ids:
            self.last_moved.pop(run_id, None)  # to the end: the most recently active
            self.last_moved[run_id] = now
        self.forget_quiet_runs()

    async def publish(self, lines: list[LogLine]) -> int:
        """Store lines in the backlog and emit those not emitted yet; return how many went out as `log`."""
        async with self.lock:
            await self.backlog.add(lines)
            singles = self.advance_marks(Event.LINE, lines)
            batched = self.advance_marks(Event.BATCH, lines)
            try:
                # once per run, not per line: a batch is mostly one run's lines, and most viewers take batches
                watched = {run_id for run_id in {line["run_id"] for line in singles} if self._watched_singly(run_id)}
                for line in singles:
                    if line["run_id"] in watched:
                        await self.sio.emit(Event.LINE, line, room=rooms_of_line(line["run_id"], Event.LINE))
                by_run: dict[str, list[LogLine]] = defaultdict(list)
                for line in batched:
                    by_run[line["run_id"]].append(line)
                for run_id, run_lines in by_run.items():
                    await self.sio.emit(Event.BATCH, run_lines, room=rooms_of_line(run_id, Event.BATCH))
            except BaseException:
                # the broadcaster retries the batch, here or on another node: it must go out again from here (a
                # client ignores a line it has), not count as emitted when some node may lack it
                self.rewind_marks(Event.LINE, singles)
                self.rewind_marks(Event.BATCH, batched)
                raise
        self.lines_received += len(lines)
        self.lines_emitted += len(singles)
        self._observe_lag(lines)
        return len(singles)

    def relayed(self, lines: list[LogLine]) -> None:
        """Count lines another node published, new here and emitted here through Redis, and observe their lag."""
        self.lines_relayed += len(lines)
        self._observe_lag(lines)

    def _observe_lag(self, lines: list[LogLine]) -> None:
        if self.observe_lag is not None and lines:
            self.observe_lag(max(0.0, time.time() - min(line["ts"] for line in lines)))

    def rewind_marks(self, event: Event, moved: list[LogLine]) -> None:
        """Set the marks of `event` back before `moved`, lines advance_marks returned (call under `lock`)."""
        marks = self.marks[event]
        for line in moved:
            marks[line["run_id"]] = min(marks.get(line["run_id"], 0), line["seq"] - 1)

    async def subscribe(self, sid: str, sub: Subscription) -> Replay:
        """Join the subscription's room and replay what the client missed, newest first within
        `max_replay_lines` in all (older lines are the API's to serve).

        A room the connection is in already is not replayed again: subscribing in a loop must not make the server
        send the backlog over and over (unsubscribe first to be replayed anew).
        """
        event = Event.of(sub.batch)
        joined = room(sub.run_id, event)
        replay = Replay()
        async with self.lock:
            # the subscribe may have waited for the lock while the client went: nothing to join, nothing to keep
            if not self.sio.manager.is_connected(sid, "/"):
                raise ClientGone(sid)
            self.forget_quiet_runs()
            rooms = self.subscriptions[sid]
            if joined in rooms:
                return replay
            if len(rooms) >= self.max_subscriptions:
                raise TooManySubscriptions(self.max_subscriptions)
            await self.sio.enter_room(sid, joined)
            rooms.add(joined)
            try:
                per_run: list[list[LogLine]] = []
                for run_id, after_seq in reversed(await self._replay_plan(sub)):  # the newest runs first
                    mark = self.marks[event].get(run_id)
                    if mark is None:  # a run this node has not emitted yet: live lines follow what the backlog has
                        mark = await self.backlog.last_seq(run_id)
                        if mark:  # a run unknown here takes no room (any client may name any run)
                            self.marks[event][run_id] = mark
                            self._moved({run_id})
                    budget = self.max_replay_lines - replay.lines
                    lines = await self.backlog.since(run_id, after_seq, up_to=mark, limit=budget) if budget else []
                    replay.lines += len(lines)
                    replay.runs[run_id] = {"first_seq": lines[0]["seq"] if lines else mark + 1, "last_seq": mark}
                    per_run.append(lines)
            except BaseException:  # not subscribed, then: the client may subscribe again and be replayed
                await self.sio.leave_room(sid, joined)
                rooms.discard(joined)
                raise
            for lines in reversed(per_run):
                await self._replay(sid, event, lines)
        return replay

    async def unsubscribe(self, sid: str, sub: Subscription) -> None:
        left = room(sub.run_id, Event.of(sub.batch))
        await self.sio.leave_room(sid, left)
        if (rooms := self.subscriptions.get(sid)) is not None:
            rooms.discard(left)

    def connected(self, sid: str) -> None:
        self.clients += 1

    def disconnected(self, sid: str) -> None:
        self.clients -= 1
        self.subscriptions.pop(sid, None)

    def _watched_singly(self, run_id: str) -> bool:
        """Some client may take the run's lines as single `log` events: one on this node, or any on other nodes
        (told through Redis). Most viewers take `logs` batches; emitting each line to no one cost about 9 % of make
        bench's batched lines/s."""
        if isinstance(self.sio.manager, AsyncPubSubManager):
            return True
        here = self.sio.manager.rooms.get("/", {})
        return any(here.get(name) for name in rooms_of_line(run_id, Event.LINE))

    def subscription_count(self) -> int:
        return sum(len(rooms) for rooms in self.subscriptions.values())

    async def _replay(self, sid: str, event: Event, lines: list[LogLine]) -> None:
        # ignore_queue: a replay is for this node's client only, not for the other nodes through Redis
        if event is Event.BATCH:
            for start in range(0, len(lines), REPLAY_CHUNK):
                await self.sio.emit(Event.BATCH, lines[start : start + REPLAY_CHUNK], to=sid, ignore_queue=True)
        else:
            for line in lines:
                await self.sio.emit(Event.LINE, line, to=sid, ignore_queue=True)

    async def _replay_plan(self, sub: Subscription) -> list[tuple[str, int]]:
        if sub.run_id != ALL_RUNS:
            return [(sub.run_id, sub.after_seq if isinstance(sub.after_seq, int) else 0)]
        if sub.after_seq is None:
            return []
        runs = await self.backlog.recent_runs()
        if isinstance(sub.after_seq, int):
            return [(run_id, sub.after_seq) for run_id in runs]
        return [(run_id, sub.after_seq.get(run_id, 0)) for run_id in runs]


class HubRedisManager(socketio.AsyncRedisManager, RoomEmitManager):  # type: ignore[misc]  # python-socketio ships no types
    """python-socketio's Redis manager, with lines from other nodes emitted under the hub's lock and marks, and each
    node's own clients sent to as RoomEmitManager does (it comes after the Redis manager, in place of AsyncManager).

    Overrides `_handle_emit`, where python-socketio hands this node the emits of other nodes: no public hook
    sees them, and it is the one place to keep `LogHub.marks` exact. tests/test_hub.py pins the shape of the
    message it relies on, so a python-socketio upgrade that changes it fails there.
    """

    hub: LogHub | None = None

    async def _publish(self, data: dict[str, Any]) -> Any:
        published = await super()._publish(data)
        # python-socketio tries twice, logs the error and returns None; lines must not be lost to the other nodes
        # so quietly: the request that brought them fails, and the broadcaster counts it and sends them again
        if published is None and data.get("method") == "emit" and data.get("event") in EVENTS:
            raise MessageQueueUnavailable("Redis did not take the lines: the other nodes did not get them")
        return published

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        to_rooms = isinstance(message.get("room"), list)  # lines go to [run room, all room]; replays to a sid
        if self.hub is None or message.get("host_id") == self.host_id or event not in EVENTS or not to_rooms:
            await super()._handle_emit(message)
            return
        # the emitted arguments travel as a list: [line] for `log`, [[line, ...]] for `logs`
        lines = message["data"] if event == Event.LINE else message["data"][0]
        async with self.hub.lock:
            moved = self.hub.advance_marks(Event(event), lines)
            if moved:
                await super()._handle_emit({**message, "data": moved if event == Event.LINE else [moved]})
        if event == Event.BATCH:  # every line comes as a `logs` batch, some also as `log` events: counted once
            self.hub.relayed(moved)
