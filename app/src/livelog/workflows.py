"""Workflows: a planner decides the next step, an executor runs it; every line goes to the log stream.

`kudos-report` is the demo: a few steps with small delays, to watch a run stream in a browser.
`chatter` emits a given number of lines at a given interval, for load and failover tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from livelog.models import MAX_MESSAGE_CHARS, RUN_ID_PATTERN, Level
from livelog.store import RunStore

log = logging.getLogger("livelog.workflows")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: Literal["kudos-report", "chatter"] = "kudos-report"
    run_id: Annotated[str, Field(pattern=RUN_ID_PATTERN)] | None = None
    # pause between lines; the demo's default is slow enough to watch
    interval_ms: Annotated[int, Field(ge=0, le=10_000)] = 150
    # chatter only: how many lines to emit
    lines: Annotated[int, Field(ge=1, le=100_000)] = 100


class Broadcast(Protocol):
    def broadcast(self, line: dict[str, Any]) -> None: ...


class RunLogger:
    """Numbers a run's lines, keeps them in the store, hands them to the broadcaster and to stdout."""

    def __init__(self, run_id: str, store: RunStore, broadcaster: Broadcast) -> None:
        self.run_id = run_id
        self.seq = 0
        self._store = store
        self._broadcaster = broadcaster

    def __call__(self, message: str, level: Level = "INFO") -> dict[str, Any]:
        self.seq += 1
        line = {
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": time.time(),
            "level": level,
            "message": message[:MAX_MESSAGE_CHARS],
        }
        self._store.append_line(line)
        self._broadcaster.broadcast(line)
        log.log(logging.getLevelName(level), "%s (run %s #%d)", message, self.run_id, self.seq)
        return line


@dataclass(frozen=True)
class Action:
    name: str
    type: str
    progress: tuple[str, ...]


KUDOS_REPORT = (
    Action("kudos-data-retriever", "data_query", ("Querying kudos for the last 7 days", "Fetched 42 kudos")),
    Action("kudos-aggregator", "transform", ("Grouping kudos by team", "Top team: platform (12 kudos)")),
    Action("kudos-summary-writer", "generation", ("Drafting the weekly summary", "Summary: 312 words")),
    Action("kudos-notifier", "notification", ("Posting the summary to #kudos", "Delivered to 3 channels")),
)


class Planner:
    """Decides the next action from what has run so far; `None` means the run is complete."""

    def __init__(self, plan: tuple[Action, ...], emit: RunLogger) -> None:
        self._plan = plan
        self._emit = emit

    def next_action(self, done: int) -> Action | None:
        if done >= len(self._plan):
            self._emit("[PLANNER] Decision: finish (all actions completed)")
            return None
        action = self._plan[done]
        self._emit(f"[PLANNER] Decision: {action.name}")
        return action


class Executor:
    def __init__(self, emit: RunLogger, interval: float) -> None:
        self._emit = emit
        self._interval = interval

    async def run(self, action: Action) -> None:
        started = time.monotonic()
        self._emit(f"[EXECUTOR] Running action {action.name} (type: {action.type})")
        for message in action.progress:
            await asyncio.sleep(self._interval)
            self._emit(f"[EXECUTOR] {action.name}: {message}")
        self._emit(f"[EXECUTOR] Action {action.name} completed in {time.monotonic() - started:.2f}s")

    async def chatter(self, count: int) -> None:
        self._emit(f"[EXECUTOR] Running action chatter (type: load, {count} lines)")
        for number in range(1, count + 1):
            await asyncio.sleep(self._interval)
            self._emit(f"[EXECUTOR] chatter line {number}/{count}")


async def run_workflow(request: RunRequest, emit: RunLogger) -> None:
    executor = Executor(emit, request.interval_ms / 1000)
    if request.workflow == "chatter":
        emit("[PLANNER] Decision: chatter")
        await executor.chatter(request.lines)
        return
    planner = Planner(KUDOS_REPORT, emit)
    done = 0
    while (action := planner.next_action(done)) is not None:
        await executor.run(action)
        done += 1
