"""The API's run and log history, in SQLite under the service's data directory (the source of truth).

Every write once serving (all but startup's `mark_interrupted`) goes through a LineWriter, off the event loop:
lines in batches, the rest (a run's start and finish, retention) between them. What reads lines or their count
settles it first, so a reader sees every line logged before it asked (a download settles once, then reads its pages
with `written_lines`, which does not). Reads are on the event loop: in WAL mode they never wait for a writer.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from livelog import sqlite
from livelog.auth import MAX_TTL_S
from livelog.backlog import RETENTION_SECONDS
from livelog.line_writer import LineWriter
from livelog.models import LogLine, Run, RunStatus

_RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL,
    created REAL NOT NULL, finished REAL, error TEXT, lines INTEGER NOT NULL DEFAULT 0)
"""
# the ids of runs retention removed, held this long: a new run with one must not be taken for the old one by a
# Socket.IO node (which forgets a quiet run's lines and marks after RETENTION_SECONDS), nor be readable with a
# viewer token given out for the old one (which lasts MAX_TTL_S at most)
_RETIRED_IDS_TABLE = "CREATE TABLE IF NOT EXISTS retired_ids (run_id TEXT PRIMARY KEY, retired REAL NOT NULL)"
RETIRED_ID_HOLD_S = max(RETENTION_SECONDS, MAX_TTL_S) + 3600
# how long a read waits for the lines logged before it (normally a batch's commit: milliseconds) before it is told
# the store is behind: as long as SQLite waits for a lock
READ_WAIT_S = 5.0
_SELECT_RUNS = "SELECT run_id, workflow, status, params, created, finished, error, lines FROM runs"


class StoreBehind(Exception):
    """A read would miss lines logged before it: the writer could not write them in time."""


class RunStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite.connect(
            path,
            sqlite.LINES_TABLE,
            _RUNS_TABLE,
            _RETIRED_IDS_TABLE,
            "CREATE INDEX IF NOT EXISTS retired_ids_by_time ON retired_ids (retired)",
            "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created)",
        )
        self.writer = LineWriter(path)

    def start(self) -> None:
        """Start writing lines (needs the running event loop)."""
        self.writer.start()

    async def create_run(self, run_id: str, workflow: str, params: dict[str, Any]) -> tuple[bool, float | None]:
        """Record a new run. Returns (created, held_until): not created if the id is taken, or held until then
        because retention removed a run with that id lately (checked in the same write, so a prune cannot come
        between the check and the insert)."""
        row = (run_id, workflow, "running", json.dumps(params), time.time())

        def insert(db: sqlite3.Connection) -> tuple[bool, float | None]:
            retired = db.execute("SELECT retired FROM retired_ids WHERE run_id = ?", (run_id,)).fetchone()
            if retired and retired[0] + RETIRED_ID_HOLD_S > time.time():
                return False, retired[0] + RETIRED_ID_HOLD_S
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, workflow, status, params, created) VALUES (?, ?, ?, ?, ?)", row
            )
            return cursor.rowcount == 1, None

        return await self.writer.execute(insert)

    async def finish_run(
        self, run_id: str, status: RunStatus, error: str | None = None, *, for_request: bool = False
    ) -> None:
        """Record how a run ended, after its lines, tried again while SQLite cannot take it now
        (`LineWriter.persist`). `for_request`: once, and its lines waited for READ_WAIT_S at most, so that the request
        answers 503 rather than wait."""
        # a finished run has all its lines
        await (self._caught_up() if for_request else self.writer.settle())
        row = (status, time.time(), error, run_id)

        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE runs SET status = ?, finished = ?, error = ? WHERE run_id = ?", row)

        if for_request:
            await self.writer.execute(update)
        else:
            await self.writer.persist(update, f"the end of run {run_id}")

    def mark_interrupted(self) -> int:
        """Runs left `running` by a previous process cannot finish any more."""
        cursor = self._db.execute(
            "UPDATE runs SET status = 'interrupted', finished = ? WHERE status = 'running'", (time.time(),)
        )
        return cursor.rowcount

    async def _caught_up(self) -> None:
        """Wait for the lines logged before this read to be written, READ_WAIT_S at most (then raise StoreBehind)."""
        try:
            async with asyncio.timeout(READ_WAIT_S):
                await self.writer.settle()
        except TimeoutError:
            behind = f"lines logged before this read are not written after {READ_WAIT_S:g} s (the log says why)"
            raise StoreBehind(behind) from None

    def append_line(self, line: LogLine) -> None:
        self.writer.append(line)

    async def get_run(self, run_id: str) -> Run | None:
        await self._caught_up()
        found = self._db.execute(f"{_SELECT_RUNS} WHERE run_id = ?", (run_id,)).fetchone()
        return _to_run(found) if found else None

    async def recent_runs(self, limit: int, only: frozenset[str] | None = None) -> list[Run]:
        """The newest runs; with `only`, the newest of those runs."""
        await self._caught_up()
        if only is None:
            rows = self._db.execute(f"{_SELECT_RUNS} ORDER BY created DESC LIMIT ?", (limit,))
        else:
            ids = sorted(only)[:1000]  # a token names at most 100 runs
            marks = ",".join("?" * len(ids))
            rows = self._db.execute(
                f"{_SELECT_RUNS} WHERE run_id IN ({marks}) ORDER BY created DESC LIMIT ?", (*ids, limit)
            )
        return [_to_run(row) for row in rows]

    async def lines(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        await self._caught_up()
        return self.written_lines(run_id, after_seq, limit)

    def written_lines(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """`lines` without waiting for lines still to be written: for a read that waited once already. A line waits
        behind every line logged before it, so what this returns has no gap."""
        rows = self._db.execute(
            f"{sqlite.SELECT_LINES} WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", (run_id, after_seq, limit)
        )
        return [sqlite.to_line(row) for row in rows]

    async def prune(self, max_age_s: float, max_lines: int) -> list[str]:
        """Delete finished runs older than `max_age_s`, then the oldest finished runs while the store holds more
        than `max_lines` lines; return the ids deleted, which are held for RETIRED_ID_HOLD_S. Running runs are never
        deleted."""
        return await self.writer.execute(functools.partial(_prune, max_age_s=max_age_s, max_lines=max_lines))

    async def close(self) -> None:
        """Write every line waiting, then close."""
        await self.writer.close()
        self._db.close()


def _to_run(row: tuple[Any, ...]) -> Run:
    run_id, workflow, status, params, created, finished, error, lines = row
    return Run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        params=json.loads(params),
        created=created,
        finished=finished,
        error=error,
        lines=lines,
    )


def _prune(db: sqlite3.Connection, max_age_s: float, max_lines: int) -> list[str]:
    now = time.time()
    cutoff = now - max_age_s
    doomed = []
    total = db.execute("SELECT COALESCE(SUM(lines), 0) FROM runs").fetchone()[0]
    # oldest first, read only as far as needed: the aged runs, then older runs while over the line limit
    finished = db.execute("SELECT run_id, lines, created FROM runs WHERE status != 'running' ORDER BY created")
    for run_id, lines, created in finished:
        if created >= cutoff and total <= max_lines:
            break
        doomed.append(run_id)
        total -= lines
    with db:
        db.execute("BEGIN")
        for run_id in doomed:
            db.execute("DELETE FROM lines WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        db.executemany("INSERT OR REPLACE INTO retired_ids VALUES (?, ?)", ((r, now) for r in doomed))
        db.execute("DELETE FROM retired_ids WHERE retired <= ?", (now - RETIRED_ID_HOLD_S,))
    return doomed
