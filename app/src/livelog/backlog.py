"""The Socket.IO server's backlog: recent lines of each run, for late and reconnecting clients.

It is never only in memory: a restarted server still replays what it had. One node keeps it in SQLite in its
data directory; several nodes share it in Redis, so any node can replay any run.
"""

from __future__ import annotations

import itertools
import json
import operator
import sqlite3
import time
from pathlib import Path
from typing import Protocol, cast

import orjson
import redis.asyncio as aioredis

from livelog import sqlite
from livelog.models import MAX_SEQ, LogLine

# how long a quiet run's lines are kept at most (checked at most once a minute, with the total line limit);
# a shorter LIVELOG_RETENTION_DAYS wins. The backlog serves late and reconnecting clients, the API's store the rest.
RETENTION_SECONDS = 24 * 3600
# runs a wildcard subscriber is replayed at most
MAX_REPLAY_RUNS = 100

# a row per run per batch received, its lines as one JSON array: a batch is written in one insert, where a row per
# line cost as much CPU as the rest of the server's work on it (0.8 of 3 µs a line); reads, which are rare, unpack
_BATCHES_TABLE = """
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, newest_ts REAL NOT NULL,
    line_count INTEGER NOT NULL, lines BLOB NOT NULL)
"""
_INSERT_BATCH = """
INSERT INTO batches (run_id, first_seq, last_seq, newest_ts, line_count, lines) VALUES (?, ?, ?, ?, ?, ?)
"""
_BATCHES_INDEX = "CREATE INDEX IF NOT EXISTS batches_by_run ON batches (run_id, last_seq)"
# once started, the backlog's writes run on the event loop, and only this process writes the file: another process
# holding its lock (a shell, a backup) makes a broadcast fail after this long, rather than stall every viewer and
# request for the 5 s the API's store waits. The broadcast answers 503 and the broadcaster sends it again until the
# lock goes: no line is lost, and live lines wait meanwhile (the lines go to the backlog before they are emitted, so
# that a replay never misses a line a viewer was sent), while pings, subscribes and /health go on
BUSY_TIMEOUT_MS = 100
_run_id = operator.itemgetter("run_id")
_seq = operator.itemgetter("seq")
_ts = operator.itemgetter("ts")


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
    """The newest `per_run` lines of each run (by seq), the first copy of a line received twice. A batch's row stays
    whole while any of its lines is among them."""

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
        self._db = sqlite.connect(path, _BATCHES_TABLE, _BATCHES_INDEX)
        self._forget_older_releases()
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._next_expiry = 0.0

    def _forget_older_releases(self) -> None:
        """Releases before this one kept a row per line in `lines`, and left `batches` as it was when they were rolled
        back to. Both are a cache of what the API's store has: start empty (a client fetches its gap from the API)."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lines'").fetchone():
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM batches")
                self._db.execute("DROP TABLE lines")

    async def add(self, lines: list[LogLine]) -> None:
        rows = []
        # a row per run: sorted() is stable, so each run's lines keep the order they came in
        for run_id, run_lines in itertools.groupby(sorted(lines, key=_run_id), _run_id):
            group = list(run_lines)
            seqs = list(map(_seq, group))
            rows.append((run_id, min(seqs), max(seqs), max(map(_ts, group)), len(group), orjson.dumps(group)))
        with self._db:
            self._db.execute("BEGIN")
            self._expire()  # first: a new run with the id of one expired must not meet its lines
            self._db.executemany(_INSERT_BATCH, rows)
            for run_id in {row[0] for row in rows}:  # the batches all of whose lines are past the newest per_run
                too_old = self._newest(run_id) - self.per_run
                self._db.execute("DELETE FROM batches WHERE run_id = ? AND last_seq <= ?", (run_id, too_old))

    async def since(self, run_id: str, after_seq: int, up_to: int = MAX_SEQ, limit: int = MAX_SEQ) -> list[LogLine]:
        if limit < 1:
            return []
        self._expire()
        lowest = max(after_seq + 1, self._newest(run_id) - self.per_run + 1)
        aged = time.time() - self.max_age_s  # a batch outlives its oldest lines
        rows = self._db.execute(
            "SELECT rowid, last_seq, lines FROM batches WHERE run_id = ? AND last_seq >= ? AND first_seq <= ? "
            "ORDER BY last_seq DESC",
            (run_id, lowest, up_to),
        )
        first_copies: dict[int, tuple[int, LogLine]] = {}
        newest_wanted: int | None = None  # the `limit`-th newest seq found, once `limit` are
        for rowid, last_seq, blob in rows:
            if newest_wanted is not None and last_seq < newest_wanted:
                break  # this row and those after it (newest first) hold only older lines: a replay's cost is its limit
            for line in orjson.loads(blob):
                seq = line["seq"]
                if lowest <= seq <= up_to and line["ts"] >= aged:
                    copy = first_copies.get(seq)
                    if copy is None or rowid < copy[0]:
                        first_copies[seq] = (rowid, line)
            if newest_wanted is None and len(first_copies) >= limit:
                newest_wanted = sorted(first_copies)[-limit]
        seqs = sorted(first_copies)
        return [first_copies[seq][1] for seq in seqs[max(0, len(seqs) - limit) :]]

    async def last_seq(self, run_id: str) -> int:
        self._expire()
        return self._newest(run_id)

    async def recent_runs(self) -> list[str]:
        self._expire()
        rows = self._db.execute(
            "SELECT run_id FROM batches GROUP BY run_id ORDER BY MAX(newest_ts) DESC LIMIT ?", (MAX_REPLAY_RUNS,)
        )
        return [row[0] for row in reversed(rows.fetchall())]

    async def close(self) -> None:
        self._db.close()

    def _newest(self, run_id: str) -> int:
        row = self._db.execute("SELECT MAX(last_seq) FROM batches WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def _expire(self) -> None:
        """At most once every `check_every_s`: drop lines past their age, then the quietest runs while over
        `max_lines`. Reads expire too, so an idle node does not replay lines past their age."""
        now = time.time()
        if now < self._next_expiry:
            return
        self._next_expiry = now + self._check_every_s
        try:
            self._db.execute("DELETE FROM batches WHERE newest_ts < ?", (now - self.max_age_s,))
            kept = self._db.execute(  # a run keeps per_run lines at most, whatever its rows hold
                "SELECT COALESCE(SUM(MIN(n, ?)), 0) FROM (SELECT SUM(line_count) AS n FROM batches GROUP BY run_id)",
                (self.per_run,),
            ).fetchone()[0]
            excess = kept - self.max_lines
            if excess > 0:  # the quietest runs go first
                self._db.execute(
                    "DELETE FROM batches WHERE run_id IN "
                    "(SELECT run_id FROM batches GROUP BY run_id ORDER BY MAX(newest_ts) LIMIT ?)",
                    (max(1, excess // self.per_run + 1),),
                )
        except sqlite3.OperationalError as exc:
            # housekeeping, done at the next check: a read must not fail for it while another process holds the lock
            # (reads leave out lines past their age themselves); a write fails at its insert anyway
            if not sqlite.unavailable(exc):
                raise


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
