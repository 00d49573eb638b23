"""The Socket.IO server's backlog: recent lines of each run, for late and reconnecting clients.

It lives in SQLite in the data directory rather than in memory, so a restarted server still replays what
it had, and so it can tell a line it already emitted from a new one when the broadcaster retries a batch.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

# how long a quiet run's lines are kept; checked at most once a minute
RETENTION_SECONDS = 24 * 3600
# runs a wildcard subscriber is replayed at most
MAX_REPLAY_RUNS = 100

_COLUMNS = ("run_id", "seq", "ts", "level", "message")


class SqliteBacklog:
    def __init__(self, path: Path, per_run: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.per_run = per_run
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS lines (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,"
            " level TEXT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        self._next_expiry = 0.0

    def add(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store lines; return those not stored before (a retried batch returns only what is new)."""
        new = []
        with self._db:
            self._db.execute("BEGIN")
            for line in lines:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO lines VALUES (?, ?, ?, ?, ?)", [line[c] for c in _COLUMNS]
                )
                if cursor.rowcount:
                    new.append(line)
            for run_id in {line["run_id"] for line in new}:
                self._db.execute(
                    "DELETE FROM lines WHERE run_id = ? AND seq <= (SELECT MAX(seq) FROM lines WHERE run_id = ?) - ?",
                    (run_id, run_id, self.per_run),
                )
            self._expire()
        return new

    def since(self, run_id: str, after_seq: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT run_id, seq, ts, level, message FROM lines WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after_seq),
        )
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]

    def recent_runs(self) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM lines GROUP BY run_id ORDER BY MAX(ts) DESC LIMIT ?", (MAX_REPLAY_RUNS,)
        )
        return [row[0] for row in reversed(rows.fetchall())]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM lines").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def _expire(self) -> None:
        now = time.time()
        if now < self._next_expiry:
            return
        self._next_expiry = now + 60
        self._db.execute("DELETE FROM lines WHERE ts < ?", (now - RETENTION_SECONDS,))
