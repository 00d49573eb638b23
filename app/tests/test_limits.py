"""Limits that keep one caller from exhausting the host: runs per key, subscriptions per connection, retention,
and the API's body cap; against real servers (and the backlog's cap in process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import httpx
import pytest
import socketio
from conftest import Services

from livelog.backlog import SqliteBacklog
from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, make_lines

KEY, OTHER_KEY = "limits-key-0123456789", "limits-other-0123456789"
AUTH = {
    "LIVELOG_API_KEYS": f"{KEY},{OTHER_KEY}",
    "LIVELOG_VIEWER_TOKEN_SECRET": "limits-secret-0123456789abcdef-012345",
}


def post(
    api: Service, path: str, key: str = KEY, headers: dict[str, str] | None = None, **kwargs: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    return httpx.post(f"{api.url}{path}", headers=headers, timeout=5, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def capped(module_services: Services) -> tuple[Service, Service]:
    return module_services.pair(
        **AUTH, LIVELOG_MAX_RUNS_PER_KEY=2, LIVELOG_MAX_SUBSCRIPTIONS=3, LIVELOG_MAX_BODY_BYTES=4096
    )


def test_runs_per_key_are_capped(capped: tuple[Service, Service]) -> None:
    _, api = capped
    slow = {"workflow": "chatter", "lines": 100, "interval_ms": 1000}
    assert [post(api, "/api/runs", json=slow).status_code for _ in range(2)] == [202, 202]
    refused = post(api, "/api/runs", json=slow)
    assert refused.status_code == 429
    assert refused.json()["detail"] == "this API key has 2 runs going, the most it may have; start more when one ends"
    assert post(api, "/api/runs", OTHER_KEY, json=slow).status_code == 202, "the cap is per key"
    assert httpx.get(f"{api.url}/health").json()["status"] == "healthy"


async def test_runs_started_at_once_are_capped_too(services: Services) -> None:
    """A start waits for the store to record its run: the ones that come meanwhile count it."""
    _, api = services.pair(**AUTH, LIVELOG_MAX_RUNS_PER_KEY=2)
    slow = {"workflow": "chatter", "lines": 100, "interval_ms": 1000}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        answers = await asyncio.gather(*(client.post(f"{api.url}/api/runs", json=slow) for _ in range(6)))
    assert sorted(answer.status_code for answer in answers) == [202, 202, 429, 429, 429, 429]


async def test_subscriptions_per_connection_are_capped(capped: tuple[Service, Service]) -> None:
    sio, api = capped
    token = post(api, "/api/viewer-tokens", json={"runs": ["*"]}).json()["token"]
    client = await LogSubscriber(sio.url, "cap-1", token=token).connect()
    for run_id in ("cap-2", "cap-3", "cap-1"):  # the third room; then one it has already: no new subscription
        assert (await client.sio.call("subscribe", {"run_id": run_id}, timeout=5))["ok"] is True
    refused = await client.sio.call("subscribe", {"run_id": "cap-4"}, timeout=5)
    assert refused == {"ok": False, "error": "run_id: this connection has 3 subscriptions, the most it may have"}
    # a client that emits the server's own `disconnect` and `connect` events resets nothing
    await client.sio.emit("disconnect")
    await client.sio.emit("connect", {"token": token})
    assert await client.sio.call("subscribe", {"run_id": "cap-5"}, timeout=5) == refused
    assert client.sio.connected
    assert sio.health()["connections"]["subscriptions"] >= 3
    await client.close()


def test_the_api_caps_bodies(capped: tuple[Service, Service]) -> None:
    _, api = capped
    big = {"run_id": "big", "message": "x" * 5000}
    assert post(api, "/api/test-log", json=big).status_code == 413

    def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(10):
            yield b" " * 1000

    response = post(api, "/api/test-log", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert post(api, "/api/test-log", json={"run_id": "small"}).status_code == 200


def test_retention_keeps_the_newest_runs_within_the_line_limit(module_services: Services) -> None:
    _, api = module_services.pair(**AUTH, LIVELOG_RETENTION_LINES=5)
    for number in range(8):
        assert post(api, "/api/test-log", json={"run_id": f"kept-{number}"}).status_code == 200
    runs = httpx.get(f"{api.url}/api/runs", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert sorted(run["run_id"] for run in runs) == [f"kept-{number}" for number in range(3, 8)]
    assert "Retention removed 1 runs (oldest: kept-0)" in api.output()
    # the Socket.IO server may still hold the removed run's lines and marks: its id is not used again meanwhile
    for path, body in [("/api/test-log", {"run_id": "kept-0"}), ("/api/runs", {"run_id": "kept-1"})]:
        held = post(api, path, json=body)
        assert held.status_code == 409, held.text
        assert "belonged to a run that retention removed; it may be used again from" in held.json()["detail"]


def test_retention_removes_runs_older_than_the_age_limit(module_services: Services) -> None:
    _, api = module_services.pair(**AUTH, LIVELOG_RETENTION_DAYS=1 / 86400)  # one second
    assert post(api, "/api/test-log", json={"run_id": "aged"}).status_code == 200
    time.sleep(1.1)
    assert post(api, "/api/test-log", json={"run_id": "fresh"}).status_code == 200
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{api.url}/api/runs/aged", headers=headers).status_code == 404
    assert httpx.get(f"{api.url}/api/runs/fresh", headers=headers).status_code == 200


async def test_the_backlog_neither_replays_nor_keeps_lines_past_their_age(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10, check_every_s=0, max_age_s=0.2)
    await backlog.add(make_lines("aged", 1, 5))
    await asyncio.sleep(0.3)
    assert await backlog.last_seq("aged") == 0, "an idle node does not replay lines past their age"
    await backlog.add(make_lines("reused", 1, 5))
    await asyncio.sleep(0.3)
    again = make_lines("reused", 1, 2)
    await backlog.add(again)
    assert await backlog.since("reused", 0) == again, "a run with the id of one expired is kept whole"
    await backlog.close()


async def test_the_backlog_keeps_at_most_its_line_limit(tmp_path: Path) -> None:
    backlog = SqliteBacklog(tmp_path / "backlog.sqlite3", per_run=10, max_lines=25, check_every_s=0)
    for run_id in ("old", "middle", "new"):
        await backlog.add(make_lines(run_id, 1, 10))
        await asyncio.sleep(0.01)  # the runs' newest lines are ordered in time
    assert await backlog.since("old", 0) == []
    assert len(await backlog.since("middle", 0)) == 10 and len(await backlog.since("new", 0)) == 10
    await backlog.close()


async def test_connections_beyond_the_cap_get_a_clear_503_and_health_answers(services: Services) -> None:
    sio = services("socketio", LIVELOG_MAX_CONNECTIONS=3)
    clients = [await LogSubscriber(sio.url, f"cap-{n}").connect() for n in range(3)]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{sio.url}/socket.io/?EIO=4&transport=websocket")
        assert refused.value.status == 503
        async with http.get(f"{sio.url}/socket.io/?EIO=4&transport=polling") as polling:
            assert polling.status == 503 and "retry later" in (await polling.json())["detail"]
    with pytest.raises(socketio.exceptions.ConnectionError):
        await LogSubscriber(sio.url, "cap-3").connect(wait_seconds=3)
    health = sio.health()
    assert health["connections"]["open"] == 3 and health["connections"]["refused"] >= 3
    assert sio.output().count("Refused") == 1, "refusals are logged, at most once per 10 s"
    assert " ERROR " not in sio.output() and "WebSocket" not in sio.output(), "and nothing per connection"
    await clients[0].close()
    await eventually(lambda: sio.health()["connections"]["open"] == 2, what="a place to free up")
    late = await LogSubscriber(sio.url, "cap-3").connect()
    for client in [*clients[1:], late]:
        await client.close()
