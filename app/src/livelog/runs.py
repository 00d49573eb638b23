"""Run management: start a workflow as a task, number and keep its lines, hand them to the broadcaster, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections import Counter
from typing import Any, Protocol

from livelog.logs import TaggedLogger
from livelog.models import MAX_MESSAGE_CHARS, Level, LogLine, RunStatus, line_message, utf8_text
from livelog.store import RunStore
from livelog.workflows import RunRequest, run_workflow

log = TaggedLogger("livelog.runs", "[EXECUTOR]")
# workflow lines, echoed to the service's own log at debug level only: the journal is for the service's own
# events, and a line per workflow line would cost every log call (LIVELOG_LOG_LEVEL=debug shows them)
lines_log = logging.getLogger("livelog.workflows")


class Broadcast(Protocol):
    def broadcast(self, line: LogLine) -> None: ...


class RunExists(Exception):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} exists")
        self.run_id = run_id


class RunIdHeld(Exception):
    def __init__(self, run_id: str, until: float) -> None:
        free = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
        super().__init__(f"run id {run_id} belonged to a run that retention removed; it may be used again from {free}")
        self.run_id = run_id


class TooManyRuns(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this API key has {limit} runs going, the most it may have; start more when one ends")


class RunLogger:
    """A run's `Emit`: numbers its lines, keeps them in the store, hands them to the broadcaster and to stdout."""

    def __init__(self, run_id: str, store: RunStore, broadcaster: Broadcast) -> None:
        self.run_id = run_id
        self.seq = 0
        self._store = store
        self._broadcaster = broadcaster
        # asked once per run, not per line (a third of the call's cost); the level is set at startup
        self._echo = lines_log.isEnabledFor(logging.DEBUG)

    def __call__(self, message: str, level: Level = "INFO") -> LogLine:
        self.seq += 1
        line: LogLine = {
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": time.time(),
            "level": level,
            # line_message's own first test, here: what a workflow logs mostly needs nothing done, and no call for it
            "message": message if len(message) <= MAX_MESSAGE_CHARS and message.isascii() else line_message(message),
        }
        self._store.append_line(line)
        self._broadcaster.broadcast(line)
        if self._echo:
            lines_log.debug("%s (run %s #%d, %s)", line["message"], self.run_id, self.seq, level)
        return line


class RunManager:
    """The runs this process executes: each a task, tracked until it ends, cancelled at shutdown."""

    def __init__(
        self,
        store: RunStore,
        broadcaster: Broadcast,
        *,
        max_runs_per_owner: int = 10,
        retention_s: float = 30 * 86400,
        retention_lines: int = 5_000_000,
    ) -> None:
        self.store = store
        self._broadcaster = broadcaster
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: Counter[str] = Counter()
        self._max_runs_per_owner = max_runs_per_owner
        self._retention_s = retention_s
        self._retention_lines = retention_lines

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def start(self, request: RunRequest, owner: str = "") -> str:
        """Start a workflow run for `owner` (who asked: an API key's id); return its id.

        Raises TooManyRuns when the owner has the most runs going it may have, RunExists when the id is taken,
        RunIdHeld when retention removed a run with that id lately.
        """
        if self._running[owner] >= self._max_runs_per_owner:
            raise TooManyRuns(self._max_runs_per_owner)
        self._running[owner] += 1  # now: a start that comes while the store records this one counts it
        # shielded: a start cancelled while the store records its run still starts it (or undoes the count)
        return await asyncio.shield(self._begin(request, owner))

    async def _begin(self, request: RunRequest, owner: str) -> str:
        try:
            run_id = await self._create(request.run_id, request.workflow, request.model_dump(exclude={"run_id"}))
        except BaseException:
            self._running[owner] -= 1
            raise
        task = asyncio.create_task(self._execute(run_id, request))
        self._tasks.add(task)

        def ended(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._running[owner] -= 1

        task.add_done_callback(ended)
        return run_id

    async def prune(self) -> None:
        """Apply the retention policy to the store; say what went."""
        if removed := await self.store.prune(self._retention_s, self._retention_lines):
            log.info("Retention removed %d runs (oldest: %s)", len(removed), removed[0])

    async def log_test_line(self, run_id: str | None, message: str) -> LogLine:
        """A one-line run, finished at once: proves the way from here to the browsers."""
        run_id = await self._create(run_id or f"test-{uuid.uuid4().hex[:12]}", "test-log", {})
        line = RunLogger(run_id, self.store, self._broadcaster)(f"[TEST] {message}")
        await self.store.finish_run(run_id, "succeeded", for_request=True)
        await self.prune()
        return line

    async def shutdown(self) -> None:
        self.store.writer.stop_retrying()  # a stop does not wait out SQLite's retries: the next start marks the runs
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _create(self, run_id: str | None, workflow: str, params: dict[str, Any]) -> str:
        run_id = run_id or uuid.uuid4().hex[:16]
        created, held_until = await self.store.create_run(run_id, workflow, params)
        if held_until is not None:
            raise RunIdHeld(run_id, held_until)
        if not created:
            raise RunExists(run_id)
        return run_id

    async def _execute(self, run_id: str, request: RunRequest) -> None:
        emit = RunLogger(run_id, self.store, self._broadcaster)
        try:
            await run_workflow(request, emit)
        except asyncio.CancelledError:
            emit("[EXECUTOR] Run cancelled by shutdown", "WARNING")
            await self._record_end(run_id, "interrupted")
            raise
        except Exception as exc:
            log.exception("Run %s failed", run_id)
            emit(f"[EXECUTOR] Run failed: {exc}", "ERROR")
            await self._record_end(run_id, "failed", utf8_text(str(exc)))
        else:
            await self._record_end(run_id, "succeeded")
        try:
            await self.prune()
        except sqlite3.OperationalError as exc:
            log.warning("Retention did not run: %s (it runs again when a run ends)", exc)

    async def _record_end(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """The store retries what it cannot take now; what it still cannot take is said here, where nothing else
        would (a run's task has no one awaiting it)."""
        try:
            await self.store.finish_run(run_id, status, error)
        except sqlite3.OperationalError as exc:
            log.error(
                "Could not record that run %s ended (%s): %s; it shows running until the API restarts",
                run_id,
                status,
                exc,
            )
