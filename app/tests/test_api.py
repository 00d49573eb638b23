"""The REST API with a real Socket.IO server: runs stream live, are kept across restarts, bad input is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import Services, write_locked

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, free_port


def run_status(api: Service, run_id: str) -> str:
    return httpx.get(f"{api.url}/api/runs/{run_id}").json()["status"]


async def test_demo_run_streams_live_and_survives_an_api_restart(pair: tuple[Service, Service]) -> None:
    sio, api = pair
    client = await LogSubscriber(sio.url, "demo-1").connect()

    response = httpx.post(f"{api.url}/api/runs", json={"run_id": "demo-1", "interval_ms": 5})
    assert response.status_code == 202
    assert response.json()["run_id"] == "demo-1"
    await eventually(lambda: run_status(api, "demo-1") == "succeeded", what="the run to finish")
    run = httpx.get(f"{api.url}/api/runs/demo-1").json()
    await eventually(lambda: len(client.lines) == run["lines"], what="every line at the client")

    assert client.seqs() == list(range(1, run["lines"] + 1))
    assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
    messages = [line["message"] for line in client.lines]
    assert "[PLANNER] Decision: kudos-data-retriever" in messages
    assert "[EXECUTOR] Running action kudos-data-retriever (type: data_query)" in messages
    history = httpx.get(f"{api.url}/api/runs/demo-1/logs").json()
    assert [line["message"] for line in history] == messages

    api.stop()
    api.start()
    assert httpx.get(f"{api.url}/api/runs/demo-1").json()["status"] == "succeeded"
    assert httpx.get(f"{api.url}/api/runs/demo-1/logs", params={"after_seq": 3}).json() == history[3:]
    await client.close()


def test_startup_names_the_endpoint(shared_pair: tuple[Service, Service]) -> None:
    sio, api = shared_pair
    assert f"[HTTP_BROADCASTER] Socket.IO endpoint: http://127.0.0.1:{sio.port}" in api.output()
    assert httpx.get(f"{api.url}/health").json()["broadcaster"]["endpoint"] == f"http://127.0.0.1:{sio.port}"


async def test_test_log_returns_run_and_seq(shared_pair: tuple[Service, Service]) -> None:
    sio, api = shared_pair
    client = await LogSubscriber(sio.url, "probe-1").connect()
    answer = httpx.post(f"{api.url}/api/test-log", json={"run_id": "probe-1", "message": "hi"}).json()
    assert answer["run_id"] == "probe-1" and answer["seq"] == 1
    await eventually(lambda: [line["message"] for line in client.lines] == ["[TEST] hi"], what="the test line")
    assert httpx.post(f"{api.url}/api/test-log").json()["run_id"].startswith("test-")
    await client.close()


def test_a_store_another_process_holds_locked_gets_a_clear_503_not_a_500(services: Services, tmp_path: Path) -> None:
    data = tmp_path / "locked"
    _, api = services.pair(LIVELOG_DATA_DIR=str(data))
    # another process writing past the busy timeout (5 s): a backup, a second API
    lock = write_locked(data / "api.sqlite3")
    refused = httpx.post(f"{api.url}/api/runs", json={"run_id": "locked"}, timeout=30)
    assert (refused.status_code, refused.headers.get("retry-after")) == (503, "5")
    assert "database is locked" in refused.json()["detail"]
    assert "Traceback" not in api.output(), "an operational condition, not a bug"
    lock.execute("ROLLBACK")
    assert httpx.post(f"{api.url}/api/runs", json={"run_id": "locked"}).status_code == 202, "and it works once free"
    lock.close()


async def test_a_read_while_the_store_cannot_write_the_lines_before_it_gets_503_and_nothing_is_lost(
    services: Services, tmp_path: Path
) -> None:
    data = tmp_path / "behind"
    _, api = services.pair(LIVELOG_DATA_DIR=str(data))
    body = {"run_id": "behind", "workflow": "chatter", "lines": 30, "interval_ms": 100}
    assert httpx.post(f"{api.url}/api/runs", json=body).status_code == 202
    lock = write_locked(data / "api.sqlite3")  # past the busy timeout: the run's lines wait, and are tried again
    waiting = lambda: httpx.get(f"{api.url}/health").json()["store"]["pending"] > 0  # noqa: E731
    await eventually(waiting, what="lines logged after the lock, waiting for it")
    behind = httpx.get(f"{api.url}/api/runs/behind/logs", timeout=30)
    assert (behind.status_code, behind.headers.get("retry-after")) == (503, "5"), "told, within seconds, not a wait"
    assert "not written after 5 s" in behind.json()["detail"]
    lock.execute("COMMIT")
    lock.close()
    ended = lambda: httpx.get(f"{api.url}/api/runs/behind").json().get("status") == "succeeded"  # noqa: E731
    await eventually(ended, seconds=60, what="the run to end")
    lines = httpx.get(f"{api.url}/api/runs/behind/logs").json()
    assert [line["seq"] for line in lines] == list(range(1, 33)), "every line, once SQLite could take them"
    assert "The run store cannot take" in api.output() and "out of the run store" not in api.output()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/runs/nope", None, 404),
        ("GET", "/api/runs/nope/logs", None, 404),
        # not an id a run can have: 422, with nothing of it echoed
        ("GET", "/api/runs/%3Cscript%3Ealert(1)", None, 422),
        ("GET", "/api/runs/" + "x" * 900 + "/logs", None, 422),
        ("GET", "/api/runs/a%22b/logs.txt", None, 422),
        ("GET", "/api/runs/x/logs?after_seq=-1", None, 422),
        ("POST", "/api/runs", b"{not json", 422),
        ("POST", "/api/runs", b'{"workflow": "rm -rf"}', 422),
        ("POST", "/api/runs", b'{"interval_ms": 999999}', 422),
        ("POST", "/api/runs", b'{"run_id": "../../etc"}', 422),
        ("POST", "/api/test-log", b'{"message": ""}', 422),
        ("POST", "/api/test-log", b'{"run_id": "dup-1"}', 409),
        # found by schemathesis: no 500 for a seq SQLite cannot hold, no lax coercion, no echo that cannot encode
        ("GET", "/api/runs/dup-1/logs?after_seq=9223372036854775808", None, 422),
        ("POST", "/api/runs", b'{"interval_ms": true}', 422),
        ("POST", "/api/runs", b'{"lines": "10", "workflow": "chatter"}', 422),
        ("POST", "/api/runs", b'{"lines": 1e309, "workflow": "chatter"}', 422),
        # a 900 KB message: refused, and the answer does not carry it back
        ("POST", "/api/test-log", b'{"message": "' + b"x" * 900_000 + b'"}', 422),
        ("POST", "/api/test-log", b'{"message": "\\ud800"}', 422),
        ("POST", "/api/test-log", b"\xff", 400),
    ],
)
def test_bad_requests_get_4xx(
    shared_pair: tuple[Service, Service], method: str, path: str, body: bytes | None, status: int
) -> None:
    _, api = shared_pair
    httpx.post(f"{api.url}/api/test-log", json={"run_id": "dup-1"})
    headers = {"Content-Type": "application/json"}
    response = httpx.request(method, f"{api.url}{path}", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and "\\ud800" not in response.text and "<script" not in response.text
    assert len(response.content) < 1000, "an error names the problem, it does not echo the input"
    assert httpx.get(f"{api.url}/health").json()["status"] == "healthy"


async def test_runs_finish_while_socketio_is_down_and_lines_follow(services: Services) -> None:
    port = free_port()
    api = services("api", SOCKETIO_PORT=port)
    run_id = httpx.post(f"{api.url}/api/runs", json={"workflow": "chatter", "lines": 30, "interval_ms": 0}).json()[
        "run_id"
    ]
    await eventually(lambda: run_status(api, run_id) == "succeeded", what="the run to finish without Socket.IO")
    health = httpx.get(f"{api.url}/health").json()
    assert health["status"] == "degraded"
    assert health["broadcaster"]["last_error_kind"] == "cannot_reach"
    assert health["broadcaster"]["queued"] == 32
    assert "[HTTP_BROADCASTER] Cannot reach Socket.IO server at" in api.output()

    sio = services("socketio", port=port)
    await eventually(lambda: httpx.get(f"{api.url}/health").json()["broadcaster"]["queued"] == 0, what="drain")
    client = await LogSubscriber(sio.url, run_id).connect()
    await eventually(lambda: len(client.lines) == 32, what="all 32 lines replayed")
    assert client.seqs() == list(range(1, 33))
    assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
    assert httpx.get(f"{api.url}/health").json()["status"] == "healthy"
    await client.close()
