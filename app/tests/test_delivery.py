"""The delivery guarantee, end to end: every client ends with every line of a run exactly once and in order, counted
against the API's store, although the Socket.IO server is killed mid-run and stays down longer than its backlog
covers; and `livelog tail`, which follows a run by the same rule."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Services

from livelog.api_client import ApiClient
from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, service_env

KEY = "delivery-test-key"
SECRET = "delivery-test-secret-of-at-least-32-bytes"
SETTINGS = {"LIVELOG_API_KEYS": KEY, "LIVELOG_VIEWER_TOKEN_SECRET": SECRET}
AUTH = {"Authorization": f"Bearer {KEY}"}
CLIENTS = 10  # of each kind: `livelog tail --jsonl` processes and LogSubscribers
LINES = 15_000  # ~30 s at ~500 lines/s; 15 s down queues ~7,500 lines, far beyond the 1,000-line backlog
DOWN_SECONDS = 15


def tail_command(api: Service, sio: Service, run_id: str, *options: str) -> list[str]:
    urls = ["--api-url", api.url, "--socketio-url", sio.url, "--api-key", KEY]
    return [sys.executable, "-m", "livelog", "tail", run_id, *urls, *options]


def start_tail(api: Service, sio: Service, run_id: str, out: Path, *options: str) -> subprocess.Popen[str]:
    """A `livelog tail` printing to `out` (a file: a pipe nobody reads would hold it up)."""
    with out.open("w") as stdout:
        return subprocess.Popen(
            tail_command(api, sio, run_id, *options),
            env=service_env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )


def stored_lines(api: Service, run_id: str, count: int) -> list[tuple[int, str]]:
    lines = httpx.get(f"{api.url}/api/runs/{run_id}/logs?limit=10000&after_seq=0", headers=AUTH).json()
    lines += httpx.get(f"{api.url}/api/runs/{run_id}/logs?limit=10000&after_seq=10000", headers=AUTH).json()
    assert len(lines) == count
    return [(line["seq"], line["message"]) for line in lines]


@pytest.mark.timeout(240)
async def test_every_client_gets_every_line_through_a_socketio_crash(services: Services, tmp_path: Path) -> None:
    sio, api = services.pair(**SETTINGS)
    run_id = "crash-15s"
    body = {"workflow": "chatter", "run_id": run_id, "lines": LINES, "interval_ms": 2}
    assert httpx.post(f"{api.url}/api/runs", json=body, headers=AUTH).status_code == 202

    outputs = [tmp_path / f"tail-{n}.jsonl" for n in range(CLIENTS)]
    tails = [start_tail(api, sio, run_id, out, "--jsonl") for out in outputs]
    history = ApiClient(api.url, KEY)
    token = (await history.viewer_token([run_id], 3600)) or ""
    # half retry every 0.2 s and are back before the broadcaster has flushed what it queued; half retry every 20 s
    # (like a browser's backoff), after the flush has pushed their gap out of the server's backlog
    subscribers = [
        await LogSubscriber(
            sio.url, run_id, batch=n % 2 == 1, token=token, history=history, retry_delay=0.2 if n < 5 else 20
        ).connect()
        for n in range(CLIENTS)
    ]
    await eventually(lambda: all(s.last_seq() > 1000 for s in subscribers), seconds=60, what="the run under way")

    sio.stop(signal.SIGKILL)
    killed_at = subscribers[0].last_seq()
    await asyncio.sleep(DOWN_SECONDS)
    sio.start()

    total = LINES + 2  # the planner's decision and the executor's start line
    run = await _ended(api, run_id)
    assert (run["status"], run["lines"]) == ("succeeded", total)
    assert run["lines"] - killed_at > 1000 + DOWN_SECONDS * 100, "the outage outlasted what the backlog covers"
    expected = stored_lines(api, run_id, total)

    for subscriber in subscribers:
        await eventually(lambda s=subscriber: s.last_seq() >= total, seconds=60, what="every subscriber to catch up")
        assert [(line["seq"], line["message"]) for line in subscriber.lines] == expected, "once each, in order"
        assert subscriber.gaps == [] and subscriber.connects >= 2
    assert sum(s.filled for s in subscribers) > 0, "the gap the outage left was filled from the API"
    for process, out in zip(tails, outputs, strict=True):
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        printed = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(line["seq"], line["message"]) for line in printed] == expected, "tail: once each, in order"
        assert set(printed[0]) == {"run_id", "seq", "ts", "level", "message"}
    for subscriber in subscribers:
        await subscriber.close()
    await history.aclose()


async def _ended(api: Service, run_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run: dict[str, object] = httpx.get(f"{api.url}/api/runs/{run_id}", headers=AUTH).json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.5)
    raise AssertionError("the run did not end")


@pytest.fixture(scope="module")
def keyed_pair(module_services: Services) -> tuple[Service, Service]:
    return module_services.pair(**SETTINGS)


def test_tail_prints_a_finished_run_and_exits_0(keyed_pair: tuple[Service, Service]) -> None:
    sio, api = keyed_pair
    body = {"workflow": "chatter", "run_id": "tail-done", "lines": 3, "interval_ms": 0}
    assert httpx.post(f"{api.url}/api/runs", json=body, headers=AUTH).status_code == 202
    done = subprocess.run(tail_command(api, sio, "tail-done"), env=service_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    messages = [line.split(None, 2)[2] for line in done.stdout.splitlines()]
    assert messages == [
        "[PLANNER] Decision: chatter",
        "[EXECUTOR] Running action chatter (type: load, 3 lines)",
        *(f"[EXECUTOR] chatter line {n}/3" for n in (1, 2, 3)),
    ]
    assert done.stdout.split()[1] == "INFO"


def test_tail_prints_the_lines_after_a_hole_in_the_store_and_names_it(keyed_pair: tuple[Service, Service]) -> None:
    """Lines the API's store does not have (it dropped them when its queue was full, as retention or an operator may
    delete them): every other line is printed, and the exit says which are missing."""
    sio, api = keyed_pair
    body = {"workflow": "chatter", "run_id": "tail-holed", "lines": 200, "interval_ms": 0}
    assert httpx.post(f"{api.url}/api/runs", json=body, headers=AUTH).status_code == 202
    ended = lambda: httpx.get(f"{api.url}/api/runs/tail-holed", headers=AUTH).json()["status"] != "running"  # noqa: E731
    asyncio.run(eventually(ended, what="the run to end"))
    with sqlite3.connect(Path(api.env["LIVELOG_DATA_DIR"]) / "api.sqlite3") as store:
        store.execute("DELETE FROM lines WHERE run_id = 'tail-holed' AND (seq = 50 OR seq BETWEEN 120 AND 130)")
    tailed = subprocess.run(
        tail_command(api, sio, "tail-holed"), env=service_env(), capture_output=True, text=True, timeout=60
    )
    assert tailed.returncode == 1, tailed.stderr
    assert "lines 50, 120..130 could not be read" in tailed.stderr
    printed = [line.split(None, 2)[2] for line in tailed.stdout.splitlines()]
    assert len(printed) == 202 - 12 and printed[-1] == "[EXECUTOR] chatter line 200/200", "every line it could read"


@pytest.mark.parametrize(
    ("run_id", "options", "code", "says"),
    [
        ("no-such-run", [], 2, "no run no-such-run"),
        ("../etc", [], 2, "not a run id"),
        ("tail-done", ["--api-key", "wrong"], 3, "HTTP 401"),
    ],
)
def test_tail_fails_clearly(
    keyed_pair: tuple[Service, Service], run_id: str, options: list[str], code: int, says: str
) -> None:
    sio, api = keyed_pair
    failed = subprocess.run(
        [*tail_command(api, sio, run_id), *options], env=service_env(), capture_output=True, text=True, timeout=30
    )
    assert (failed.returncode, failed.stdout) == (code, "")
    assert says in failed.stderr and "Traceback" not in failed.stderr
