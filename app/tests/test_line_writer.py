"""The run store's batched writes: nothing lost, order kept, bounded, and everything written at a stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import Services, write_locked

from livelog.line_writer import MAX_BATCH
from livelog.models import LogLine
from livelog.raw_log import PAGE_LINES, raw_log
from livelog.runs import RunLogger, RunManager
from livelog.store import RunStore, StoreBehind
from livelog.testing import eventually, make_lines
from livelog.workflows import RunRequest


async def open_store(path: Path, *runs: str) -> RunStore:
    store = RunStore(path)
    store.start()
    for run_id in runs:
        assert await store.create_run(run_id, "test", {}) == (True, None)
    return store


async def test_lines_logged_without_a_pause_are_kept_in_order_in_few_transactions(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "a", "b")
    a, b = make_lines("a", 1, 20_000), make_lines("b", 1, 20_000)
    for line_a, line_b in zip(a, b, strict=True):  # two runs, interleaved, as concurrent workflows log
        store.append_line(line_a)
        store.append_line(line_b)

    assert await store.lines("a", 0, 100_000) == a
    assert await store.lines("b", 0, 100_000) == b
    assert [run["lines"] for run in await store.recent_runs(10)] == [20_000, 20_000]
    assert store.writer.written == 40_000 and store.writer.dropped == 0
    # appended without yielding to the event loop: the writer found them all waiting, and took the most it takes
    assert store.writer.batches == 40_000 // MAX_BATCH
    await store.close()


async def test_a_line_alone_is_written_at_once(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "slow")
    for seq in (1, 2, 3):
        store.append_line(make_lines("slow", seq, seq)[0])
        await store.writer.settle()  # returns when written: no timer holds a lone line back
        assert store.writer.written == seq and store.writer.batches == seq
    await store.close()


class Collected:
    """A broadcaster that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []

    def broadcast(self, line: LogLine) -> None:
        self.lines.append(line)


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_a_run_echoes_its_lines_to_the_service_log_at_debug_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "echo")
    broadcaster = Collected()
    caplog.set_level(level, logger="livelog.workflows")
    line = RunLogger("echo", store, broadcaster)("[EXECUTOR] hello", "WARNING")
    await store.writer.settle()
    assert line == {**line, "run_id": "echo", "seq": 1, "level": "WARNING", "message": "[EXECUTOR] hello"}
    assert broadcaster.lines == [line] and await store.lines("echo", 0, 10) == [line]
    echoed = [record.getMessage() for record in caplog.records if record.name == "livelog.workflows"]
    assert echoed == (["[EXECUTOR] hello (run echo #1, WARNING)"] if level == logging.DEBUG else [])
    await store.close()


async def test_a_full_queue_drops_new_lines_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "flood")
    store.writer.max_pending = 10
    with caplog.at_level(logging.WARNING):
        for line in make_lines("flood", 1, 15):
            store.append_line(line)
        await store.writer.settle()
    assert [line["seq"] for line in await store.lines("flood", 0, 100)] == list(range(1, 11))
    assert store.writer.dropped == 5 and store.writer.pending == 0
    assert "Left 1 line(s) out of the run store (1 in all): 10 lines already wait to be written" in caplog.text
    assert "Left 4 line(s) out of the run store (5 in all)" in caplog.text, "the rest, once the queue drained"
    await store.close()


async def test_settle_waits_for_the_lines_before_it_though_later_ones_are_dropped(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "stall")
    store.writer.max_pending = 2
    lock = write_locked(tmp_path / "api.sqlite3")  # the disk stalls: the writer's next commit waits for this lock
    lines = make_lines("stall", 1, 6)
    store.append_line(lines[0])
    await eventually(lambda: store.writer.pending == 0, what="the writer to take line 1")  # and wait on the lock
    store.append_line(lines[1])
    store.append_line(lines[2])

    async def written_when_settled() -> int:
        await store.writer.settle()
        return store.writer.written

    settled = asyncio.create_task(written_when_settled())
    await asyncio.sleep(0)  # the call: it waits for lines 1 to 3
    for line in lines[3:]:  # a full queue: dropped, after the call
        store.append_line(line)
    await asyncio.sleep(0.2)
    assert not settled.done(), "lines 1 to 3 are not written yet"
    lock.execute("COMMIT")
    assert await asyncio.wait_for(settled, 10) == 3, "settle returned before every line before the call was written"
    assert store.writer.dropped == 3
    assert [line["seq"] for line in await store.lines("stall", 0, 10)] == [1, 2, 3]
    lock.close()
    await store.close()


async def test_a_run_starts_and_finishes_without_the_event_loop_waiting_for_the_write_lock(tmp_path: Path) -> None:
    """A run's rows and retention are written on the writer's thread: while another transaction holds SQLite's write
    lock (a long batch, a stalled disk), the event loop goes on, and the writes land once the lock is free."""
    store = await open_store(tmp_path / "api.sqlite3", "before")
    lock = write_locked(tmp_path / "api.sqlite3")
    created = asyncio.create_task(store.create_run("during", "test", {}))
    finished = asyncio.create_task(store.finish_run("before", "succeeded"))
    pruned = asyncio.create_task(store.prune(max_age_s=0, max_lines=0))
    # on the event loop's thread, each would block the loop in SQLite's busy wait for 5 s, then fail "locked"
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in (created, finished, pruned)), "they wait for the lock, off the loop"
    assert (await store.get_run("before"))["status"] == "running", "reads go on meanwhile"
    lock.execute("COMMIT")
    assert await asyncio.wait_for(created, 10) == (True, None)
    await asyncio.wait_for(finished, 10)
    assert await asyncio.wait_for(pruned, 10) == ["before"]
    assert [run["run_id"] for run in await store.recent_runs(10)] == ["during"]
    lock.close()
    await store.close()


async def test_a_cancelled_write_keeps_the_connection_until_its_thread_ends(tmp_path: Path) -> None:
    """A thread cannot be stopped: a write cancelled while SQLite waits in it must not let the next one share the
    connection meanwhile."""
    store = await open_store(tmp_path / "api.sqlite3")
    lock = write_locked(tmp_path / "api.sqlite3")
    created = asyncio.create_task(store.create_run("cancelled", "test", {}))
    await asyncio.sleep(0.1)
    created.cancel()
    after = asyncio.create_task(store.create_run("after", "test", {}))
    await asyncio.sleep(0.2)
    assert not created.done() and not after.done(), "both wait for the thread that still waits for the lock"
    lock.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(created, 10)
    assert await asyncio.wait_for(after, 10) == (True, None)
    assert {run["run_id"] for run in await store.recent_runs(10)} == {"cancelled", "after"}, "the thread's insert ran"
    lock.close()
    await store.close()


async def test_a_start_cancelled_while_the_store_records_it_still_starts_the_run(tmp_path: Path) -> None:
    """The row is written on a thread that cannot be stopped: the run must then run, not stay `running` for good."""
    store = await open_store(tmp_path / "api.sqlite3")
    runs = RunManager(store, Collected())
    lock = write_locked(tmp_path / "api.sqlite3")
    request = RunRequest(workflow="chatter", run_id="kept", lines=3, interval_ms=0)
    start = asyncio.create_task(runs.start(request, owner="k"))
    await asyncio.sleep(0.1)
    start.cancel()
    lock.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await start
    async with asyncio.timeout(10):  # the run ends (a start undone would leave no run, or one `running` for good)
        while (run := await store.get_run("kept")) is None or run["status"] == "running":
            await asyncio.sleep(0.05)
    assert run["status"] == "succeeded" and run["lines"] == 5
    lock.close()
    await store.close()


async def test_a_batch_the_store_cannot_take_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "odd")
    store.append_line({**make_lines("odd", 1, 1)[0], "message": "a lone surrogate \ud800"})  # SQLite cannot encode it
    async with asyncio.timeout(30):  # a writer that died would leave settle waiting for good
        await store.writer.settle()
    assert store.writer.dropped == 1
    store.append_line(make_lines("odd", 2, 2)[0])
    assert [line["seq"] for line in await store.lines("odd", 0, 10)] == [2], "the next line is written"
    await store.close()


async def test_close_writes_every_waiting_line(tmp_path: Path) -> None:
    path = tmp_path / "api.sqlite3"
    store = await open_store(path, "last")
    lines: list[LogLine] = make_lines("last", 1, 5_000)
    for line in lines:
        store.append_line(line)
    await store.close()  # no settle before: close must write them
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*), MAX(seq) FROM lines WHERE run_id = 'last'").fetchone() == (5_000, 5_000)
        assert db.execute("SELECT lines FROM runs WHERE run_id = 'last'").fetchone() == (5_000,)


def test_an_api_stopped_mid_run_keeps_every_line_it_logged(services: Services) -> None:
    """SIGTERM while a fast workflow logs: the API writes what it logged, ends the run `interrupted` with a last
    line saying so, and after a restart the store holds lines 1..N without a hole."""
    _, api = services.pair()
    # at most 20,000 lines/s (a pause of 1 ms per 20), so the run lasts 5 s or more: flat out, the 100,000 lines took
    # half a second, and the stop could come after the run's end
    body = {"run_id": "cut", "workflow": "chatter", "lines": 100_000, "interval_ms": 1, "burst": 20}
    started = httpx.post(f"{api.url}/api/runs", json=body)
    assert started.status_code == 202
    while httpx.get(f"{api.url}/api/runs/cut").json()["lines"] < 2_000:
        pass
    api.stop(signal.SIGTERM)
    api.start()

    run = httpx.get(f"{api.url}/api/runs/cut").json()
    assert run["status"] == "interrupted", run
    lines: list[LogLine] = []
    while batch := httpx.get(f"{api.url}/api/runs/cut/logs", params={"after_seq": len(lines), "limit": 10_000}).json():
        lines.extend(batch)
    assert [line["seq"] for line in lines] == list(range(1, run["lines"] + 1))
    assert lines[-1]["message"] == "[EXECUTOR] Run cancelled by shutdown"


async def fail_fast(store: RunStore, delays: tuple[float, ...]) -> None:
    """SQLite's busy wait cut from 5 s to 50 ms, and the writer's pauses between tries to `delays`: a lock held for
    a second is one held past the busy timeout, several times."""
    await store.writer.execute(lambda db: db.execute("PRAGMA busy_timeout=50"))
    store.writer.retry_delays_s = delays


async def test_lines_sqlite_cannot_take_now_wait_and_are_written_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "locked")
    await fail_fast(store, (0.1,) * 50)
    # another process (a backup, a second API) holds the file past the busy timeout
    lock = write_locked(tmp_path / "api.sqlite3")
    lines = make_lines("locked", 1, 3)
    with caplog.at_level(logging.WARNING):
        for line in lines:
            store.append_line(line)
        await asyncio.sleep(1)
        assert (store.writer.written, store.writer.dropped) == (0, 0), "still waiting, nothing given up"
        lock.execute("COMMIT")
        async with asyncio.timeout(10):
            await store.writer.settle()
    assert await store.lines("locked", 0, 10) == lines and store.writer.dropped == 0
    assert "The run store cannot take 3 line(s) now (database is locked); trying again in 0.1 s" in caplog.text
    lock.close()
    await store.close()


async def test_lines_sqlite_still_cannot_take_after_the_tries_are_counted_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "api.sqlite3", "gone")
    await fail_fast(store, (0.05, 0.05))
    lock = write_locked(tmp_path / "api.sqlite3")
    with caplog.at_level(logging.WARNING):
        for line in make_lines("gone", 1, 2):
            store.append_line(line)
        async with asyncio.timeout(10):
            await store.writer.settle()
    assert store.writer.dropped == 2 and caplog.text.count("The run store cannot take 2 line(s) now") == 2
    assert "Left 2 line(s) out of the run store (2 in all): the store refused them: OperationalError" in caplog.text
    lock.execute("COMMIT")
    store.append_line(make_lines("gone", 3, 3)[0])
    assert [line["seq"] for line in await store.lines("gone", 0, 10)] == [3], "the next line is written"
    lock.close()
    await store.close()


async def test_a_run_logging_while_sqlite_cannot_take_its_lines_ends_with_them_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "api.sqlite3")
    await fail_fast(store, (0.1,) * 50)
    runs = RunManager(store, Collected())
    await runs.start(RunRequest(workflow="chatter", run_id="late", lines=3, interval_ms=300), owner="k")
    await store.writer.settle()
    lock = write_locked(tmp_path / "api.sqlite3")  # taken while the run logs: its last lines and its end wait for it
    with caplog.at_level(logging.WARNING):
        await asyncio.sleep(1.5)
        # read through the lock's own connection: get_run would wait for the lines that wait for the lock
        assert lock.execute("SELECT status, lines FROM runs WHERE run_id = 'late'").fetchone() == ("running", 2)
        lock.execute("COMMIT")
        async with asyncio.timeout(10):
            while (run := await store.get_run("late")) is None or run["status"] == "running":
                await asyncio.sleep(0.05)
    assert run["status"] == "succeeded" and run["lines"] == 5 and store.writer.dropped == 0
    assert "The run store cannot take 1 line(s) now (database is locked)" in caplog.text
    lock.close()
    await store.close()


async def test_a_run_end_sqlite_cannot_take_now_is_recorded_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the run's task died with the error ("Task exception was never retrieved") and the run showed
    `running` until the API restarted."""
    store = await open_store(tmp_path / "api.sqlite3", "late")
    await fail_fast(store, (0.1,) * 50)
    lock = write_locked(tmp_path / "api.sqlite3")
    with caplog.at_level(logging.WARNING):
        finished = asyncio.create_task(store.finish_run("late", "succeeded"))
        await asyncio.sleep(1)
        assert not finished.done()
        lock.execute("COMMIT")
        await asyncio.wait_for(finished, 10)
    assert (await store.get_run("late") or {}).get("status") == "succeeded"
    assert "The run store cannot take the end of run late now (database is locked); trying again" in caplog.text
    lock.close()
    await store.close()


async def test_a_run_whose_end_sqlite_never_takes_is_said_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "api.sqlite3")
    await fail_fast(store, (0.05,))
    runs = RunManager(store, Collected())
    await runs.start(RunRequest(workflow="chatter", run_id="stuck", lines=1, interval_ms=200), owner="k")
    await store.writer.settle()
    lock = write_locked(tmp_path / "api.sqlite3")
    with caplog.at_level(logging.WARNING):
        async with asyncio.timeout(10):
            while runs.active:
                await asyncio.sleep(0.05)
    assert "Could not record that run stuck ended (succeeded): database is locked; it shows running" in caplog.text
    assert "Retention did not run: database is locked" in caplog.text
    lock.execute("COMMIT")
    lock.close()
    await store.close()


async def test_a_stop_does_not_wait_out_the_pauses_between_tries(tmp_path: Path) -> None:
    """systemd stops the API within 15 s: a batch waiting to be tried again is tried once more at once."""
    store = await open_store(tmp_path / "api.sqlite3", "stopping")
    await fail_fast(store, (60.0,))
    lock = write_locked(tmp_path / "api.sqlite3")
    store.append_line(make_lines("stopping", 1, 1)[0])
    await asyncio.sleep(0.3)  # the first try failed: the writer waits 60 s for the next
    async with asyncio.timeout(5):
        await store.close()
    assert store.writer.dropped == 1, "counted (and logged), as a batch that fails its tries"
    lock.execute("ROLLBACK")
    lock.close()


async def test_a_stop_leaves_out_every_line_waiting_once_sqlite_cannot_take_a_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One try per batch at a stop would cost the busy timeout (5 s) per batch of 1,000 lines waiting."""
    store = await open_store(tmp_path / "api.sqlite3", "many")
    await fail_fast(store, (60.0,))
    lock = write_locked(tmp_path / "api.sqlite3")
    for line in make_lines("many", 1, 2500):  # three batches
        store.append_line(line)
    await asyncio.sleep(0.3)
    with caplog.at_level(logging.WARNING):
        async with asyncio.timeout(5):
            await store.close()
    assert store.writer.dropped == 2500
    assert "Left 2500 line(s) out of the run store (2500 in all)" in caplog.text, "the batch and all behind it at once"
    lock.execute("ROLLBACK")
    lock.close()


async def test_a_read_does_not_wait_long_for_lines_sqlite_cannot_take_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("livelog.store.READ_WAIT_S", 0.5)
    store = await open_store(tmp_path / "api.sqlite3", "behind")
    await fail_fast(store, (0.1,) * 50)
    lock = write_locked(tmp_path / "api.sqlite3")
    store.append_line(make_lines("behind", 1, 1)[0])
    with pytest.raises(StoreBehind, match=r"not written after 0\.5 s"):
        await asyncio.wait_for(store.lines("behind", 0, 10), 5)
    lock.execute("COMMIT")
    await store.writer.settle()
    assert [line["seq"] for line in await store.lines("behind", 0, 10)] == [1], "written once SQLite could"
    lock.close()
    await store.close()


async def test_a_download_under_way_does_not_stop_for_lines_another_run_logs_that_sqlite_cannot_take_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream cannot answer 503 once it has begun: its pages read what is written, and it ends whole."""
    monkeypatch.setattr("livelog.store.READ_WAIT_S", 0.5)
    store = await open_store(tmp_path / "api.sqlite3", "done", "running")
    for line in make_lines("done", 1, 3 * PAGE_LINES):
        store.append_line(line)
    assert await store.get_run("done") is not None  # what the endpoint does first: waits for these
    pages = raw_log(store, "done")
    text = await anext(pages)
    await fail_fast(store, (0.1,) * 50)
    lock = write_locked(tmp_path / "api.sqlite3")
    store.append_line(make_lines("running", 1, 1)[0])  # another run logs, and waits for the lock
    async with asyncio.timeout(5):
        text += "".join([page async for page in pages])
    assert [line.rsplit(" ", 1)[-1] for line in text.splitlines()] == [str(seq) for seq in range(1, 3 * PAGE_LINES + 1)]
    lock.execute("COMMIT")
    lock.close()
    await store.close()
