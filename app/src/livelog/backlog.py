"""The Socket.IO server's backlog: recent lines of each run, for late and reconnecting clients.

It is never only in memory: a restarted server still replays what it had. One node keeps it in SQLite in its
data directory; several nodes share it in Redis, so any node can replay any run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis

# how long a quiet run's lines are kept; checked at most once a minute
RETENTION_SECONDS = 24 * 3600
# runs a wildcard subscriber is replayed at most
MAX_REPLAY_RUNS = 100

_COLUMNS = ("run_id", "seq", "ts", "level", "message")


class Backlog(Protocol):
    async def add(self, lines: list[dict[str, Any]]) -> None: ...
    async def since(self, run_id: str, after_seq: int) -> list[dict[str, Any]]: ...
    async def recent_runs(self) -> list[str]: ...
    async def close(self) -> None: ...


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

    async def add(self, lines: list[dict[str, Any]]) -> None:
        """Store lines; one stored before (a retried batch) stays as it is."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO lines VALUES (?, ?, ?, ?, ?)", [[line[c] for c in _COLUMNS] for line in lines]
            )
            for run_id in {line["run_id"] for line in lines}:
                self._db.execute(
                    "DELETE FROM lines WHERE run_id = ? AND seq <= (SELECT MAX(seq) FROM lines WHERE run_id = ?) - ?",
                    (run_id, run_id, self.per_run),
                )
            self._expire()

    async def since(self, run_id: str, after_seq: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT run_id, seq, ts, level, message FROM lines WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after_seq),
        )
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]

    async def recent_runs(self) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM lines GROUP BY run_id ORDER BY MAX(ts) DESC LIMIT ?", (MAX_REPLAY_RUNS,)
        )
        return [row[0] for row in reversed(rows.fetchall())]

    async def close(self) -> None:
        self._db.close()

    def _expire(self) -> None:
        now = time.time()
        if now < self._next_expiry:
            return
        self._next_expiry = now + 60
        self._db.execute("DELETE FROM lines WHERE ts < ?", (now - RETENTION_SECONDS,))


class RedisBacklog:
    """The same backlog in Redis: per run a sorted set of lines scored by seq, and a sorted set of runs.

    A line is stored as its canonical JSON, so `ZADD NX` of a retried line adds nothing.
    """

    def __init__(self, url: str, per_run: int, prefix: str = "livelog:") -> None:
        self.per_run = per_run
        self._redis = aioredis.from_url(url)
        self._prefix = prefix

    def _key(self, run_id: str) -> str:
        return f"{self._prefix}run:{run_id}"

    async def add(self, lines: list[dict[str, Any]]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for line in lines:
                pipe.zadd(self._key(line["run_id"]), {_canonical(line): line["seq"]}, nx=True)
            for run_id in {line["run_id"] for line in lines}:
                pipe.zremrangebyrank(self._key(run_id), 0, -self.per_run - 1)
                pipe.expire(self._key(run_id), RETENTION_SECONDS)
                pipe.zadd(f"{self._prefix}runs", {run_id: time.time()})
            pipe.zremrangebyscore(f"{self._prefix}runs", 0, time.time() - RETENTION_SECONDS)
            await pipe.execute()

    async def since(self, run_id: str, after_seq: int) -> list[dict[str, Any]]:
        members = await self._redis.zrangebyscore(self._key(run_id), f"({after_seq}", "+inf")
        return [json.loads(member) for member in members]

    async def recent_runs(self) -> list[str]:
        runs = await self._redis.zrevrange(f"{self._prefix}runs", 0, MAX_REPLAY_RUNS - 1)
        return [run.decode() for run in reversed(runs)]

    async def close(self) -> None:
        await self._redis.aclose()


def _canonical(line: dict[str, Any]) -> str:
    return json.dumps(line, sort_keys=True, separators=(",", ":"))
