"""Run and log history of the API, in SQLite under the service's data directory (survives restarts)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_LINE_COLUMNS = ("run_id", "seq", "ts", "level", "message")
_RUN_COLUMNS = ("run_id", "workflow", "status", "params", "created", "finished", "error", "lines")
_SELECT_RUNS = "SELECT run_id, workflow, status, params, created, finished, error, lines FROM runs"


class RunStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS runs (
                run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL,
                created REAL NOT NULL, finished REAL, error TEXT, lines INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS lines (
                run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, level TEXT NOT NULL,
                message TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
            """
        )

    def create_run(self, run_id: str, workflow: str, params: dict[str, Any]) -> bool:
        """Record a new run; False if the id is taken."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO runs (run_id, workflow, status, params, created) VALUES (?, ?, ?, ?, ?)",
            (run_id, workflow, "running", json.dumps(params), time.time()),
        )
        return cursor.rowcount == 1

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self._db.execute(
            "UPDATE runs SET status = ?, finished = ?, error = ? WHERE run_id = ?",
            (status, time.time(), error, run_id),
        )

    def mark_interrupted(self) -> int:
        """Runs left `running` by a previous process cannot finish any more."""
        cursor = self._db.execute(
            "UPDATE runs SET status = 'interrupted', finished = ? WHERE status = 'running'", (time.time(),)
        )
        return cursor.rowcount

    def append_line(self, line: dict[str, Any]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO lines VALUES (?, ?, ?, ?, ?)", [line[c] for c in _LINE_COLUMNS])
            self._db.execute("UPDATE runs SET lines = ? WHERE run_id = ?", (line["seq"], line["run_id"]))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute(f"{_SELECT_RUNS} WHERE run_id = ?", (run_id,))
        found = row.fetchone()
        return _run(found) if found else None

    def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(f"{_SELECT_RUNS} ORDER BY created DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def lines(self, run_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT run_id, seq, ts, level, message FROM lines WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        )
        return [dict(zip(_LINE_COLUMNS, row, strict=True)) for row in rows]

    def close(self) -> None:
        self._db.close()


def _run(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip(_RUN_COLUMNS, row, strict=True))
    run["params"] = json.loads(run["params"])
    return run
