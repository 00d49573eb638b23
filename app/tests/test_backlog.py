"""The SQLite backlog keeps a row per run per batch: what it replays is still the newest lines of each run by seq,
each line once (its first copy), whatever batches they came in."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from conftest import write_locked

from livelog import backlog as backlog_module
from livelog import sqlite
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


async def test_the_first_copy_of_a_line_still_kept_wins_and_runs_may_come_mixed_and_out_of_order(
    tmp_path: Path,
) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10)
    first = make_lines("r", 1, 5)
    await backlog.add(first)
    await backlog.add([{**line, "message": "a retry with other text"} for line in make_lines("r", 3, 7)])
    kept = await backlog.since("r", 0)
    assert seqs(kept) == [1, 2, 3, 4, 5, 6, 7] and kept[:5] == first, "a line stored before stays as it was"
    a, b = make_lines("a", 1, 3), make_lines("b", 1, 2)
    await backlog.add([a[2], b[1], a[0], b[0], a[1]])
    assert await backlog.since("a", 0) == a and await backlog.since("b", 0) == b
    rows = sqlite3.connect(tmp_path / "backlog.sqlite3").execute(
        "SELECT COUNT(*) FROM batches WHERE run_id IN ('a', 'b')"
    )
    assert rows.fetchone()[0] == 2, "a row per run, however the batch mixed them"
    await backlog.close()


async def test_a_replay_leaves_out_lines_past_their_age_though_their_batch_is_kept(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10, max_age_s=60)
    old, new = make_lines("outage", 1, 3), make_lines("outage", 4, 4)
    await backlog.add([*({**line, "ts": line["ts"] - 3600} for line in old), *new])  # sent after an hour away
    assert await backlog.since("outage", 0) == new
    await backlog.close()


async def test_the_line_limit_counts_the_lines_a_run_keeps_not_the_rows_it_has(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10, max_lines=25, check_every_s=0)
    for run_id in ("quiet", "busy"):  # a batch each, larger than per_run: 10 lines kept of 15 in each
        await backlog.add(make_lines(run_id, 1, 15))
    assert len(await backlog.since("quiet", 0)) == 10 and len(await backlog.since("busy", 0)) == 10
    await backlog.close()


async def test_a_rollback_to_an_older_release_and_an_upgrade_again_start_empty(tmp_path: Path) -> None:
    path = tmp_path / "backlog.sqlite3"
    backlog = SqliteBacklog(path, per_run=10)
    await backlog.add(make_lines("r", 1, 3))
    await backlog.close()
    with sqlite3.connect(path) as older:  # the older release makes its table again, and logs r's lines 4..6 there
        older.execute("CREATE TABLE lines (run_id TEXT, seq INTEGER, ts REAL, level TEXT, message TEXT)")
    upgraded = SqliteBacklog(path, per_run=10)
    assert await upgraded.last_seq("r") == 0, "not 3: the run went on while the older release ran"
    await upgraded.close()


async def test_a_replay_of_a_few_lines_unpacks_the_newest_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs on the event loop, under the hub's lock: its cost must be its limit's, not the run's backlog's."""
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=100_000)
    for start in range(1, 50_001, 1000):
        await backlog.add(make_lines("long", start, start + 999))
    await backlog.add([{**line, "message": "retried"} for line in make_lines("long", 49_990, 50_000)])
    unpacked: list[bytes] = []
    real_loads = orjson.loads

    def loads(blob: bytes) -> object:
        unpacked.append(blob)
        return real_loads(blob)

    monkeypatch.setattr(backlog_module.orjson, "loads", loads)
    newest = await backlog.since("long", 0, limit=5)
    assert seqs(newest) == [49_996, 49_997, 49_998, 49_999, 50_000]
    assert [line["message"] for line in newest] == [f"line {seq}" for seq in seqs(newest)], "the first copies"
    assert len(unpacked) == 2, "the newest batch and the retry, not the 49 before them"
    unpacked.clear()
    assert seqs(await backlog.since("long", 0, up_to=1500, limit=3)) == [1498, 1499, 1500]
    assert len(unpacked) == 1
    await backlog.close()


async def test_while_another_process_holds_the_lock_a_write_fails_at_once_and_reads_go_on(tmp_path: Path) -> None:
    """The backlog works on the Socket.IO server's event loop: a write must not wait out the API store's 5 s, and
    a read (a subscribe's replay) must not fail for the expiry it does on the way (check_every_s=0: at each)."""
    path = tmp_path / "backlog.sqlite3"
    backlog = SqliteBacklog(path, per_run=10, check_every_s=0)
    await backlog.add(make_lines("r", 1, 3))
    lock = write_locked(path)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as refused:
        await backlog.add(make_lines("r", 4, 6))
    waited = time.monotonic() - started
    assert sqlite.unavailable(refused.value), "what the server answers 503 for"
    assert waited < 2.5, f"the write waited {waited:.1f} s for the lock, and the event loop with it"
    assert seqs(await backlog.since("r", 0)) == [1, 2, 3] and await backlog.last_seq("r") == 3
    assert await backlog.recent_runs() == ["r"]
    lock.execute("ROLLBACK")
    lock.close()
    await backlog.add(make_lines("r", 4, 6))
    assert seqs(await backlog.since("r", 0)) == [1, 2, 3, 4, 5, 6]
    await backlog.close()
