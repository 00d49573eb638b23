"""The broadcaster against real sockets: each failure kind, rate-limited logs, no blocking, recovery."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from conftest import Services

from livelog.broadcaster import HttpBroadcaster
from livelog.models import CUT_MARK, MAX_MESSAGE_CHARS, line_message
from livelog.runs import RunLogger
from livelog.store import RunStore
from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, free_port, make_lines

FAST_RETRY = {"backoff_initial": 0.01, "backoff_max": 0.02, "log_interval": 60}


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="livelog.broadcaster")
    return lambda: [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Stopping with" not in r.getMessage()
    ]


async def tcp_server(handler: Callable[..., object]) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts connections and reads requests but never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async for port in tcp_server(hold):
        yield port


@pytest.fixture
async def failing_port() -> AsyncIterator[int]:
    """A server that answers every request with 500."""

    async def fail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops")
        await writer.drain()
        writer.close()

    async for port in tcp_server(fail):
        yield port


async def failing_broadcaster(port: int, endpoint: str = "", **options: float) -> HttpBroadcaster:
    broadcaster = HttpBroadcaster(endpoint or f"http://127.0.0.1:{port}", **{**FAST_RETRY, **options})
    await broadcaster.start()
    broadcaster.broadcast(make_lines("r1", 1, 1)[0])
    await eventually(lambda: broadcaster.failures >= 5, what="five failed attempts")
    await broadcaster.close(drain_timeout=0)
    return broadcaster


async def test_nothing_listening_is_cannot_reach(warnings: Callable[[], list[str]]) -> None:
    port = free_port()
    broadcaster = await failing_broadcaster(port)
    assert broadcaster.last_error_kind == "cannot_reach"
    assert broadcaster.sent == 0 and broadcaster.dropped == 0
    assert len(warnings()) == 1, "five failures of one kind log once"
    assert warnings()[0].startswith(f"[HTTP_BROADCASTER] Cannot reach Socket.IO server at http://127.0.0.1:{port}: ")


async def test_server_that_never_answers_is_timeout(silent_port: int, warnings: Callable[[], list[str]]) -> None:
    broadcaster = await failing_broadcaster(silent_port, timeout=0.05)
    assert broadcaster.last_error_kind == "timeout"
    assert warnings() == [f"[HTTP_BROADCASTER] Socket.IO server timeout at http://127.0.0.1:{silent_port}"]


async def test_server_error_is_other_and_retried(failing_port: int, warnings: Callable[[], list[str]]) -> None:
    broadcaster = await failing_broadcaster(failing_port)
    assert broadcaster.last_error_kind == "other"
    assert broadcaster.dropped == 0, "a 500 is retried, not dropped"
    assert len(warnings()) == 1
    assert warnings()[0].startswith("[HTTP_BROADCASTER] Failed to broadcast log: HTTP 500 from http://127.0.0.1:")


async def test_an_unexpected_error_is_other_and_the_sender_lives_on(warnings: Callable[[], list[str]]) -> None:
    broadcaster = await failing_broadcaster(0, endpoint="http://socketio:7000:7000")
    assert broadcaster.last_error_kind == "other"
    assert broadcaster.failures >= 5, "the sender kept trying: it did not die on the first error"
    assert warnings()[0].startswith("[HTTP_BROADCASTER] Failed to broadcast log: ")


async def test_rate_limit_logs_again_after_the_interval(warnings: Callable[[], list[str]]) -> None:
    broadcaster = HttpBroadcaster(f"http://127.0.0.1:{free_port()}", **{**FAST_RETRY, "log_interval": 0.3})
    await broadcaster.start()
    broadcaster.broadcast(make_lines("r1", 1, 1)[0])
    await eventually(lambda: len(warnings()) == 1, what="the first warning")
    await eventually(lambda: len(warnings()) == 2, what="a second warning after the interval")
    await broadcaster.close(drain_timeout=0)
    assert broadcaster.failures > 3, "many attempts, two messages"
    assert "similar messages suppressed" in warnings()[1]


async def test_broadcast_never_waits_while_the_server_is_down(
    silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The sender is stuck on a server that never answers; broadcast() still returns at once, drops the oldest,
    and says so once per log interval, not once per line."""
    assert not inspect.iscoroutinefunction(HttpBroadcaster.broadcast)
    broadcaster = HttpBroadcaster(f"http://127.0.0.1:{silent_port}", queue_size=100, batch_max=10, timeout=60)
    await broadcaster.start()
    broadcaster.broadcast(make_lines("r1", 1, 1)[0])
    await eventually(lambda: broadcaster.queued == 1 and not broadcaster.waiting, what="first batch in flight")
    with caplog.at_level(logging.WARNING, logger="livelog.broadcaster"):
        for line in make_lines("r1", 2, 5001):
            assert broadcaster.broadcast(line) is None
    full = [record.getMessage() for record in caplog.records if "Queue full" in record.getMessage()]
    assert full == [
        "[HTTP_BROADCASTER] Queue full (100 lines, LIVELOG_QUEUE_SIZE): dropped the oldest 1 line(s) since the last "
        "such message, 1 in all; they are in the API's store, where viewers following the delivery rule fetch them"
    ]
    assert broadcaster.queued == 101, "100 queued + the one in flight"
    assert broadcaster.dropped == 4900
    assert [line["seq"] for line in broadcaster.waiting][:2] == [4902, 4903], "the oldest went first"
    with caplog.at_level(logging.WARNING, logger="livelog.broadcaster"):
        await broadcaster.close(drain_timeout=0)
    full = [record.getMessage() for record in caplog.records if "Queue full" in record.getMessage()]
    assert "dropped the oldest 4899 line(s) since the last such message, 4900 in all" in full[-1], (
        "the rest, at the stop"
    )


async def test_queued_lines_arrive_in_order_once_the_server_is_back(
    services: Services, warnings: Callable[[], list[str]]
) -> None:
    port = free_port()
    broadcaster = HttpBroadcaster(f"http://127.0.0.1:{port}", **FAST_RETRY)
    await broadcaster.start()
    for line in make_lines("late", 1, 50):
        broadcaster.broadcast(line)
    await eventually(lambda: broadcaster.failures > 2, what="the broadcaster to notice the server is down")

    sio = services("socketio", port=port)
    await eventually(lambda: broadcaster.sent == 50, what="queued lines delivered")
    assert not broadcaster.failing
    suppressed = f"{broadcaster.failures - 1} more failure(s) of kind cannot_reach while it failed"
    assert suppressed in warnings()[-1], "the failures it did not log one by one are counted once it is back"
    client = await LogSubscriber(sio.url, "late").connect()
    await eventually(lambda: len(client.lines) == 50, what="replay of 50 lines")
    assert client.seqs() == list(range(1, 51))
    assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
    await client.close()
    await broadcaster.close()


async def test_a_rejected_batch_is_dropped_and_counted(shared_pair: tuple[Service, Service]) -> None:
    sio, _ = shared_pair
    broadcaster = HttpBroadcaster(sio.url, **FAST_RETRY)
    await broadcaster.start()
    broadcaster.broadcast({"run_id": "rejected", "seq": "not a number"})  # type: ignore[typeddict-item]
    await eventually(lambda: broadcaster.dropped == 1, what="the bad line to be dropped")
    assert broadcaster.last_error_kind == "other" and "HTTP 422" in (broadcaster.last_error or "")
    broadcaster.broadcast(make_lines("rejected", 1, 1)[0])
    await eventually(lambda: broadcaster.sent == 1, what="the next line to go through")
    await broadcaster.close()


async def test_a_message_json_cannot_encode_goes_escaped_with_its_batch(shared_pair: tuple[Service, Service]) -> None:
    """RunLogger escapes such text; a line from elsewhere must not cost its batch either (nor stop the queue)."""
    sio, _ = shared_pair
    client = await LogSubscriber(sio.url, "escaped-b").connect()
    broadcaster = HttpBroadcaster(sio.url, **FAST_RETRY)
    for run_id in ("escaped-a", "escaped-b", "escaped-c"):  # queued before the sender starts: one batch
        line = make_lines(run_id, 1, 1)[0]
        broadcaster.broadcast({**line, "message": "a lone surrogate \udcff"} if run_id == "escaped-b" else line)
    # and one the server would refuse as too long once escaped, from a caller that did not cut it
    broadcaster.broadcast({**make_lines("escaped-b", 2, 2)[0], "message": "\udcff" * 2000})
    await broadcaster.start()
    await eventually(lambda: broadcaster.sent == 4, what="the batch to be sent")
    assert broadcaster.dropped == 0 and broadcaster.failures == 0
    await eventually(lambda: len(client.lines) == 2, what="the lines at the viewer")
    assert client.lines[0]["message"] == "a lone surrogate \\udcff"
    assert client.lines[1]["message"] == line_message("\udcff" * 2000) and CUT_MARK in client.lines[1]["message"]
    await client.close()
    await broadcaster.close()


def assert_cut_at_a_whole_escape(cut: str, prefix: str = "") -> None:
    """`cut`, a message of `prefix` then lone surrogates, escaped (six characters each): cut, saying so, and no escape
    left in part, nor more than the last one's part left out."""
    kept = cut.removesuffix(CUT_MARK)
    assert cut.endswith(CUT_MARK) and len(cut) <= MAX_MESSAGE_CHARS
    assert re.fullmatch(r"(\\udcff)+", kept.removeprefix(prefix))
    assert len(kept) > MAX_MESSAGE_CHARS - len(CUT_MARK) - 6, "no more than the last escape's part left out"


@pytest.mark.parametrize("before", range(6))
def test_a_long_message_is_cut_at_a_whole_escape_and_says_so(before: int) -> None:
    """Each lone surrogate takes six characters escaped: wherever one falls against the cut, none is left in part."""
    assert_cut_at_a_whole_escape(line_message("a" * before + "\udcff" * MAX_MESSAGE_CHARS), "a" * before)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("x" * MAX_MESSAGE_CHARS, "x" * MAX_MESSAGE_CHARS),
        ("x" * (MAX_MESSAGE_CHARS + 1), "x" * (MAX_MESSAGE_CHARS - len(CUT_MARK)) + CUT_MARK),
        ("é" * MAX_MESSAGE_CHARS, "é" * MAX_MESSAGE_CHARS),
        ("caf\udce9", "caf\\udce9"),
    ],
)
def test_a_message_that_fits_is_kept_as_it_is_and_one_that_does_not_is_cut(message: str, expected: str) -> None:
    assert line_message(message) == expected


async def test_a_workflow_line_of_undecodable_bytes_is_stored_and_seen_escaped(
    shared_pair: tuple[Service, Service], tmp_path: Path
) -> None:
    """Python hands over bytes it cannot decode (a file name, a process's output) as lone surrogates: the line
    still reaches the store and the viewers, with the bytes escaped, and the lines after it follow."""
    sio, _ = shared_pair
    client = await LogSubscriber(sio.url, "undecodable").connect()
    store = RunStore(tmp_path / "api.sqlite3")
    store.start()
    await store.create_run("undecodable", "test", {})
    broadcaster = HttpBroadcaster(sio.url, **FAST_RETRY)
    await broadcaster.start()
    emit = RunLogger("undecodable", store, broadcaster)
    emit(b"opened caf\xe9.txt".decode("utf-8", "surrogateescape"))
    emit("\udcff" * MAX_MESSAGE_CHARS)  # six characters each, escaped: cut to the longest message the server takes
    emit("x" * (MAX_MESSAGE_CHARS + 1))
    emit("next")
    await eventually(lambda: len(client.lines) == 4, what="every line at the viewer")
    seen = [line["message"] for line in client.lines]
    assert [line["message"] for line in await store.lines("undecodable", 0, 10)] == seen
    opened, escaped, long, after = seen
    assert (opened, after) == ("opened caf\\udce9.txt", "next")
    assert long == "x" * (MAX_MESSAGE_CHARS - len(CUT_MARK)) + CUT_MARK, "cut, and says so"
    assert_cut_at_a_whole_escape(escaped)
    assert broadcaster.dropped == 0 and store.writer.dropped == 0
    await client.close()
    await broadcaster.close()
    await store.close()


async def test_a_batch_too_large_for_the_server_goes_in_halves_in_order(services: Services) -> None:
    """A Socket.IO server that takes smaller bodies than the broadcaster's batches (LIVELOG_MAX_BODY_BYTES lowered
    on its host): the 413'd batch is split until its parts are taken, and every line arrives once, in order."""
    sio = services("socketio", LIVELOG_MAX_BODY_BYTES=8192)
    client = await LogSubscriber(sio.url, "halves").connect()
    broadcaster = HttpBroadcaster(sio.url, **FAST_RETRY)
    await broadcaster.start()
    for line in make_lines("halves", 1, 200):  # queued at once: one batch of about 40 KB
        broadcaster.broadcast({**line, "message": f"{line['message']} " + "x" * 100})
    await eventually(lambda: broadcaster.sent == 200, what="every line sent")
    assert broadcaster.dropped == 0 and broadcaster.failures >= 1, "413s, then parts that fit"
    await eventually(lambda: len(client.lines) == 200, what="every line at the client")
    assert client.seqs() == list(range(1, 201)) and client.duplicates == 0 and client.gaps == []
    await client.close()
    await broadcaster.close()
