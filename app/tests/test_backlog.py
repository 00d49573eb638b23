"""The SQLite backlog keeps a row per run per batch: what it replays is still the newest lines of each run by seq,
each line once (its first copy), whatever batches they came in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from livelog.backlog import SqliteBacklog
from livelog.models import LogLine
from livelog.testing import make_lines


def seqs(lines: list[LogLine]) -> list[int]:
    return [line["seq"] for line in lines]


async def test_it_replays_the_newest_lines_of_a_run_whatever_batches_they_came_in(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10)
    lines = make_lines("r", 1, 25)
    for start in range(0, 25, 7):  # the batch 15..21 straddles the newest 10
        await backlog.add(lines[start : start + 7])
    await backlog.add(make_lines("r", 3, 9))  # a late retry of lines long trimmed
    assert await backlog.since("r", 0) == lines[15:], "the newest 10, once each"
    assert seqs(await backlog.since("r", 17, up_to=22)) == [18, 19, 20, 21, 22]
    assert seqs(await backlog.since("r", 0, limit=3)) == [23, 24, 25], "the newest `limit` lines"
    assert await backlog.since("r", 0, limit=0) == []
    assert await backlog.last_seq("r") == 25
    batches = sqlite3.connect(tmp_path / "backlog.sqlite3").execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    assert batches == 2, "batches all of whose lines are past the newest 10 are gone"
    await backlog.close()


async def test_a_batch_of_several_runs_is_kept_per_run_and_survives_a_restart(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10)
    a, b = make_lines("a", 1, 3), make_lines("b", 1, 2)
    await backlog.add([a[0], b[0], a[1], b[1], a[2]])
    await backlog.close()
    reopened = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10)
    assert await reopened.since("a", 0) == a and await reopened.since("b", 1) == b[1:]
    assert set(await reopened.recent_runs()) == {"a", "b"}
    await reopened.close()


async def test_the_row_per_line_table_of_older_releases_goes(tmp_path: Path) -> None:
    """The backlog is a cache (the API's store has every line): what an older release kept is dropped, not read."""
    path = tmp_path / "backlog.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE lines (run_id TEXT, seq INTEGER, ts REAL, level TEXT, message TEXT)")
        old.execute("INSERT INTO lines VALUES ('r', 1, 1.0, 'INFO', 'kept by an older release')")
    backlog = SqliteBacklog(path, per_run=10)
    assert await backlog.last_seq("r") == 0
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"batches"}
    await backlog.close()
