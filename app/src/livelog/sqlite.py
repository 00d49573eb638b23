"""SQLite as the API's run store and the Socket.IO server's backlog both use it: the connection and the lines table."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

from livelog.models import Level, LogLine

LINES_TABLE = """
CREATE TABLE IF NOT EXISTS lines (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)) WITHOUT ROWID
"""
SELECT_LINES = "SELECT run_id, seq, ts, level, message FROM lines"
INSERT_LINE = "INSERT INTO lines (run_id, seq, ts, level, message) VALUES (?, ?, ?, ?, ?)"
# a line stored before (a batch the broadcaster retried) stays as it is
INSERT_LINE_IF_NEW = "INSERT OR IGNORE INTO lines (run_id, seq, ts, level, message) VALUES (?, ?, ?, ?, ?)"

LineRow = tuple[str, int, float, str, str]


def connect(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with the lines table in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    # a writer on another connection (the API's line writer) holds the lock for a batch: wait for it
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL: a crash of the machine may lose the last transactions, never corrupt the file
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(LINES_TABLE)
    return db


def to_row(line: LogLine) -> LineRow:
    return (line["run_id"], line["seq"], line["ts"], line["level"], line["message"])


def to_line(row: LineRow) -> LogLine:
    run_id, seq, ts, level, message = row
    return {"run_id": run_id, "seq": seq, "ts": ts, "level": cast(Level, level), "message": message}
