"""The Socket.IO server's backlog: recent lines of each run, for late and reconnecting clients.

It is never only in memory: a restarted server still replays what it had. One node keeps it in SQLite in its
data directory; several nodes share it in Redis, so any node can replay any run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol, cast

import redis.asyncio as aioredis

from livelog import sqlite
from livelog.models import MAX_SEQ, LogLine

# how long a quiet run's lines are kept at most (checked at most once a minute, with the total line limit);
# a shorter LIVELOG_RETENTION_DAYS wins. The backlog serves late and reconnecting clients, the API's store the rest.
RETENTION_SECONDS = 24 * 3600
# runs a wildcard subscriber is replayed at most
MAX_REPLAY_RUNS = 100


class Backlog(Protocol):
    async def add(self, lines: list[LogLine]) -> None: ...
    async def since(self, run_id: str, after_seq: int, up_to: int = MAX_SEQ, limit: int = MAX_SEQ) -> list[LogLine]:
        """The newest `limit` lines of the run with `after_seq < seq <= up_to`, in seq order."""
        ...

    async def last_seq(self, run_id: str) -> int:
        """The highest seq kept for the run; 0 when none is."""
        ...

    async def recent_runs(self) -> list[str]: ...
    async def close(self) -> None: ...


class SqliteBacklog:
    def __init__(
        self,
        path: Path,
        per_run: int,
        max_lines: int = 5_000_000,
        check_every_s: float = 60,
        max_age_s: float = RETENTION_SECONDS,
    ) -> None:
        self.per_run = per_run
        self.max_lines = max_lines
        self.max_age_s = min(max_age_s, RETENTION_SECONDS)
        self._check_every_s = check_every_s
        self._db = sqlite.connect(path)
        self._next_expiry = 0.0

    async def add(self, lines: list[LogLine]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._expire()  # first: a new run with the id of one expired must not meet its lines
            sqlite.insert_lines(self._db, lines, if_new=True)
            for run_id in {line["run_id"] for line in lines}:
                self._db.execute(
                    "DELETE FROM lines WHERE run_id = ? AND seq <= (SELECT MAX(seq) FROM lines WHERE run_id = ?) - ?",
                    (run_id, run_id, self.per_run),
                )

    async def since(self, run_id: str, after_seq: int, up_to: int = MAX_SEQ, limit: int = MAX_SEQ) -> list[LogLine]:
        self._expire()
        rows = self._db.execute(
            f"{sqlite.SELECT_LINES} WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            (run_id, after_seq, up_to, limit),
        )
        return [sqlite.to_line(row) for row in reversed(rows.fetchall())]

    async def last_seq(self, run_id: str) -> int:
        self._expire()
        row = self._db.execute("SELECT MAX(seq) FROM lines WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0] or 0)

    async def recent_runs(self) -> list[str]:
        self._expire()
        rows = self._db.execute(
            "SELECT run_id FROM lines GROUP BY run_id ORDER BY MAX(ts) DESC LIMIT ?", (MAX_REPLAY_RUNS,)
        )
        return [row[0] for row in reversed(rows.fetchall())]

    async def close(self) -> None:
        self._db.close()

    def _expire(self) -> None:
        """At most once every `check_every_s`: drop lines past their age, then the quietest runs while over
        `max_lines`. Reads expire too, so an idle node does not replay lines past their age."""
        now = time.time()
        if now < self._next_expiry:
            return
        self._next_expiry = now + self._check_every_s
        self._db.execute("DELETE FROM lines WHERE ts < ?", (now - self.max_age_s,))
        excess = self._db.execute("SELECT COUNT(*) FROM lines").fetchone()[0] - self.max_lines
        if excess > 0:  # the quietest runs go first
            self._db.execute(
                "DELETE FROM lines WHERE run_id IN (SELECT run_id FROM lines GROUP BY run_id ORDER BY MAX(ts) LIMIT ?)",
                (max(1, excess // self.per_run + 1),),
            )


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

    async def add(self, lines: list[LogLine]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for line in lines:
                pipe.zadd(self._key(line["run_id"]), {_canonical(line): line["seq"]}, nx=True)
            for run_id in {line["run_id"] for line in lines}:
                pipe.zremrangebyrank(self._key(run_id), 0, -self.per_run - 1)
                pipe.expire(self._key(run_id), RETENTION_SECONDS)
                pipe.zadd(f"{self._prefix}runs", {run_id: time.time()})
            pipe.zremrangebyscore(f"{self._prefix}runs", 0, time.time() - RETENTION_SECONDS)
            await pipe.execute()

    async def since(self, run_id: str, after_seq: int, up_to: int = MAX_SEQ, limit: int = MAX_SEQ) -> list[LogLine]:
        members = cast(
            list[bytes],
            await self._redis.zrevrangebyscore(self._key(run_id), up_to, f"({after_seq}", start=0, num=limit),
        )
        return [json.loads(member) for member in reversed(members)]

    async def last_seq(self, run_id: str) -> int:
        newest = cast(list[tuple[bytes, float]], await self._redis.zrevrange(self._key(run_id), 0, 0, withscores=True))
        return int(newest[0][1]) if newest else 0

    async def recent_runs(self) -> list[str]:
        runs = cast(list[bytes], await self._redis.zrevrange(f"{self._prefix}runs", 0, MAX_REPLAY_RUNS - 1))
        return [run.decode() for run in reversed(runs)]

    async def close(self) -> None:
        await self._redis.aclose()


def _canonical(line: LogLine) -> str:
    return json.dumps(line, sort_keys=True, separators=(",", ":"))
