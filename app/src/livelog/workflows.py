"""Workflows: a planner decides the next step, an executor runs it; every line goes to the run's log.

A workflow is an async function of its request and an `Emit`; WORKFLOWS names them (adding one is one entry).
`kudos-report` is the demo: a few steps with small delays, to watch a run stream in a browser.
`chatter` emits a given number of lines at a given interval (or in bursts), for load and failover tests.
`colour-demo` emits a build-like log with ANSI colours, warnings and errors, for the viewer (and its tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from livelog.models import JSON_NUMBER, Level, LogLine, RunId


class Emit(Protocol):
    """Logs one line of the run the workflow is running."""

    def __call__(self, message: str, level: Level = "INFO") -> LogLine: ...


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

    def __init__(self, plan: tuple[Action, ...], emit: Emit) -> None:
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
    def __init__(self, emit: Emit, interval: float) -> None:
        self._emit = emit
        self._interval = interval

    async def run(self, action: Action) -> None:
        started = time.monotonic()
        self._emit(f"[EXECUTOR] Running {action.name}...")
        self._emit(f"[EXECUTOR] Running action {action.name} (type: {action.type})")
        for message in action.progress:
            await asyncio.sleep(self._interval)
            self._emit(f"[EXECUTOR] {action.name}: {message}")
        self._emit(f"[EXECUTOR] Action {action.name} completed in {time.monotonic() - started:.2f}s")

    async def chatter(self, count: int, burst: int = 1) -> None:
        self._emit(f"[EXECUTOR] Running action chatter (type: load, {count} lines)")
        for number in range(1, count + 1):
            if (number - 1) % burst == 0:
                await asyncio.sleep(self._interval)
            self._emit(f"[EXECUTOR] chatter line {number}/{count}")


# what a build prints, colours and all: (level, message); `colour-demo` cycles through them
COLOUR_DEMO: tuple[tuple[Level, str], ...] = (
    ("INFO", "\x1b[1m==> Compiling\x1b[0m livelog (step {n})"),
    ("INFO", "\x1b[32m✔ 128 tests passed\x1b[0m in 4.2s"),
    ("WARNING", "\x1b[33mwarning:\x1b[0m deprecated option \x1b[36m--legacy\x1b[0m"),
    ("INFO", "\x1b[34mdownloading\x1b[0m artifact \x1b[4mreport-{n}.json\x1b[0m"),
    ("ERROR", "\x1b[31merror:\x1b[0m test_upload failed: \x1b[1;31mconnection reset\x1b[0m"),
    ("INFO", "\x1b[38;5;208mcache\x1b[0m hit ratio \x1b[2m(94%)\x1b[0m"),
)


async def kudos_report(request: RunRequest, emit: Emit) -> None:
    planner = Planner(KUDOS_REPORT, emit)
    executor = Executor(emit, request.interval_ms / 1000)
    done = 0
    while (action := planner.next_action(done)) is not None:
        await executor.run(action)
        done += 1


async def chatter(request: RunRequest, emit: Emit) -> None:
    emit("[PLANNER] Decision: chatter")
    await Executor(emit, request.interval_ms / 1000).chatter(request.lines, request.burst)


async def colour_demo(request: RunRequest, emit: Emit) -> None:
    for number in range(request.lines):
        level, message = COLOUR_DEMO[number % len(COLOUR_DEMO)]
        emit(message.format(n=number // len(COLOUR_DEMO) + 1), level)
        await asyncio.sleep(request.interval_ms / 1000)


Workflow = Callable[["RunRequest", Emit], Awaitable[None]]
WORKFLOWS: dict[str, Workflow] = {"kudos-report": kudos_report, "chatter": chatter, "colour-demo": colour_demo}
DEFAULT_WORKFLOW = "kudos-report"


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: Annotated[str, Field(json_schema_extra={"enum": list(WORKFLOWS)})] = DEFAULT_WORKFLOW
    run_id: RunId | None = None
    # pause between lines; the demo's default is slow enough to watch
    interval_ms: Annotated[int, Field(ge=0, le=10_000), JSON_NUMBER] = 150
    # chatter and colour-demo: how many lines to emit
    lines: Annotated[int, Field(ge=1, le=100_000), JSON_NUMBER] = 100
    # chatter only: lines emitted together, one pause per burst (a steady high rate: 20 lines per 5 ms)
    burst: Annotated[int, Field(ge=1, le=1000), JSON_NUMBER] = 1

    @field_validator("workflow")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in WORKFLOWS:
            raise ValueError(f"unknown workflow; one of: {', '.join(WORKFLOWS)}")
        return name


async def run_workflow(request: RunRequest, emit: Emit) -> None:
    await WORKFLOWS[request.workflow](request, emit)
