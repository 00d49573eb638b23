"""The Socket.IO server is killed and restarted in the middle of a run: the client still sees every line once."""

from __future__ import annotations

import signal

import httpx

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually

LINES = 150


async def test_socketio_killed_mid_run(pair: tuple[Service, Service]) -> None:
    sio, api = pair
    client = await LogSubscriber(sio.url, "restart-1").connect()
    body = {"workflow": "chatter", "run_id": "restart-1", "lines": LINES, "interval_ms": 10}
    assert httpx.post(f"{api.url}/api/runs", json=body).status_code == 202

    await eventually(lambda: len(client.lines) >= 30, what="the run to be under way")
    sio.stop(signal.SIGKILL)
    await eventually(lambda: not client.sio.connected, what="the client to notice")
    sio.start()

    total = LINES + 2  # the planner's decision and the executor's start line
    await eventually(lambda: len(client.lines) >= total, seconds=30, what="every line after the restart")
    assert client.seqs() == list(range(1, total + 1)), "every line, once, in order"
    assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
    assert client.connects == 2
    run = httpx.get(f"{api.url}/api/runs/restart-1").json()
    assert (run["status"], run["lines"]) == ("succeeded", total)
    await client.close()
