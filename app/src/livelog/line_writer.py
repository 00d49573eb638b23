"""The lines of runs, written to the run store in batches, off the event loop: one transaction per batch.

`append` is what a workflow's log call pays: a list append. A writer task takes the lines appended so far (up to
MAX_BATCH) and commits them on a thread with one transaction, so a line at a low rate is written at once (no
timer) and, under load, the lines that arrive while one batch commits make the next batch. Readers that need
what was logged `settle()` first.

A batch SQLite cannot take now (another process holds the file's lock past the busy timeout, the disk is full) is
tried again after each of `retry_delays_s`, logged each time; its lines wait meanwhile, and what arrives waits
behind them. Bounded: past `max_pending` lines waiting, new lines are left out of the store, counted and logged;
they still go to the viewers. So is a batch that still fails after its tries, or that SQLite refuses outright. A
crash loses at most the lines waiting and the batch being committed: a few milliseconds' worth, up to
`max_pending` if the disk stalls. A stop writes everything first (`close`); if SQLite cannot take a batch then,
it and every line waiting behind it are left out at once, counted. A read waits for the lines logged before it
(`settle`); the store's reads give up after a few seconds (the API answers 503).

The store's other writes (a run's start and finish, retention) go through `execute`, on the same connection and
thread, between batches: the event loop never waits for SQLite's write lock, which a batch, a large retention
delete or a stalled disk can hold for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from livelog import sqlite
from livelog.logs import TaggedLogger, Tally
from livelog.models import LogLine

log = TaggedLogger("livelog.store", "[EXECUTOR]")

MAX_PENDING = 100_000
# pauses between the tries of a write no request waits for (a batch, a run's end), when SQLite cannot take it now;
# each try itself waits up to the busy timeout (5 s) for a lock: about a minute in all
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)
# lines a transaction takes at most: the store's other writes (a run's start) wait for the batch under way, and
# under load, with the event loop holding the GIL, 10,000 lines took up to 150 ms; a batch is rarely larger anyway
MAX_BATCH = 1_000
T = TypeVar("T")


class LineWriter:
    def __init__(self, path: Path, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.retry_delays_s = RETRY_DELAYS_S
        self.appended = 0  # lines handed to append, kept or not
        self.written = 0  # lines committed
        self.batches = 0
        # lines left out of the store (too many waiting, or a failed commit), logged at most every 10 s
        self._drops = Tally()
        self._drop_reason = ""
        self._db = sqlite.connect(path, check_same_thread=False)  # used by one thread at a time: under `_connection`
        self._connection = asyncio.Lock()
        self._pending: list[LogLine] = []
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        # lines queued for the writer, and of those (in order) the ones since written or dropped; a line dropped at
        # `append` is in neither, so it cannot count for a line still waiting
        self._queued = 0
        self._handled = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="line-writer")

    def append(self, line: LogLine) -> None:
        self.appended += 1
        if len(self._pending) >= self.max_pending:
            self._drop(1, f"{self.max_pending} lines already wait to be written")
            return
        self._queued += 1
        self._pending.append(line)
        self._wake.set()

    async def settle(self) -> None:
        """Return once every line appended before the call is written (or counted as dropped)."""
        target = self._queued
        if self._handled >= target:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._handled >= target)

    async def execute(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` with the writer's connection, on a thread, between batches; return what it returns. A
        cancel still waits for the thread to end (a thread cannot be stopped) before the connection goes to the next
        batch or operation, then goes on."""
        async with self._connection:
            work = asyncio.ensure_future(asyncio.to_thread(operation, self._db))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                while not work.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({work})
                raise

    async def persist(self, operation: Callable[[sqlite3.Connection], T], what: str) -> T:
        """`execute`, tried again after each of `retry_delays_s` while SQLite cannot do it now (`sqlite.unavailable`),
        and once more at once after `stop_retrying`: for the writes no request waits for. `what` names the write in
        the log. Raises what the last try raised."""
        for delay in self.retry_delays_s:
            try:
                return await self.execute(operation)
            except sqlite3.OperationalError as exc:
                if not sqlite.unavailable(exc) or self._closing.is_set():
                    raise
                log.warning("The run store cannot take %s now (%s); trying again in %g s", what, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        return await self.execute(operation)

    def stop_retrying(self) -> None:
        """A stop is under way: each write is tried once more at most, a retry waiting now at once."""
        self._closing.set()

    async def close(self) -> None:
        """Write every line waiting, then stop."""
        self.stop_retrying()
        if self._task is not None:
            await self.settle()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._connection:  # an operation under way ends first
            self._db.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    await self.persist(functools.partial(_write, batch), f"{len(batch)} line(s)")
                    self.written += len(batch)
                    self.batches += 1
                except Exception as exc:  # sqlite3.Error, or text SQLite cannot encode: the writer
                    # must go on, or every reader would wait for it for good
                    if self._closing.is_set() and sqlite.unavailable(exc):  # a stop does not try each batch for 5 s
                        batch += self._pending
                        self._pending.clear()
                    self._drop(len(batch), f"the store refused them: {type(exc).__name__}: {exc}")
                async with self._progress:
                    self._handled += len(batch)
                    self._progress.notify_all()
            self._log_drops(self._drops.flush(), self._drop_reason)  # all written or dropped: the last drops too

    @property
    def dropped(self) -> int:
        return self._drops.total

    def _drop(self, count: int, why: str) -> None:
        self._drop_reason = why
        self._log_drops(self._drops.add(count), why)

    def _log_drops(self, since: int, why: str) -> None:
        if since:
            log.warning("Left %d line(s) out of the run store (%d in all): %s", since, self.dropped, why)


def _write(batch: list[LogLine], db: sqlite3.Connection) -> None:
    """One transaction: the lines, and each run's line count."""
    last_seq: dict[str, int] = {}
    for line in batch:
        last_seq[line["run_id"]] = line["seq"]
    with db:
        db.execute("BEGIN")
        sqlite.insert_lines(db, batch)
        db.executemany("UPDATE runs SET lines = ? WHERE run_id = ?", [(s, r) for r, s in last_seq.items()])
