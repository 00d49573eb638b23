"""SQLite as the API's run store and the Socket.IO server's backlog both use it: the connection; the store's lines (the
backlog keeps its own rows, backlog.py)."""

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

# SQLite's result codes (and their extended codes, SQLITE_IOERR_WRITE...) that say the file cannot be used now
UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")

LineRow = tuple[str, int, float, str, str]
# rows per INSERT statement: one statement of many rows costs about half as much per row as executemany's one
# statement per row (0.65 against 1.2 µs), and drops the GIL once per statement, not once per row
ROWS_PER_INSERT = 100


def connect(path: Path, *schema: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with the `schema` statements run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    # a write waits this long for another connection's transaction (the store's startup write, the line writer's
    # batch) before it fails
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL: a crash of the machine may lose the last transactions, never corrupt the file
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in schema:
        db.execute(statement)
    return db


def unavailable(exc: BaseException) -> bool:
    """SQLite could not do it now: its file locked by another process past the busy timeout, the disk full, failing
    or read-only. Not a bug: the same write may work later. Any other error of SQLite's is one."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return isinstance(exc, sqlite3.OperationalError) and name.startswith(UNAVAILABLE)


def insert_lines(db: sqlite3.Connection, lines: list[LogLine]) -> None:
    """Insert `lines`, ROWS_PER_INSERT to a statement, inside the caller's transaction (a line stored before is an
    error)."""
    for start in range(0, len(lines), ROWS_PER_INSERT):
        chunk = lines[start : start + ROWS_PER_INSERT]
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        params = [value for line in chunk for value in to_row(line)]
        db.execute(f"INSERT INTO lines (run_id, seq, ts, level, message) VALUES {values}", params)  # noqa: S608 (only ?s)


def to_row(line: LogLine) -> LineRow:
    return (line["run_id"], line["seq"], line["ts"], line["level"], line["message"])


def to_line(row: LineRow) -> LogLine:
    run_id, seq, ts, level, message = row
    return {"run_id": run_id, "seq": seq, "ts": ts, "level": cast(Level, level), "message": message}
