"""The original fix's test plan and troubleshooting guide, walked top to bottom against real processes.

Operators know that guide and grep for its lines: the startup lines in its order, a workflow's good log, the bad
log when the Socket.IO server is down, the `curl`/`lsof` checks, the four `.env` scenarios and the CORS case.
The README's "From the original fix" section maps each step to livelog.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Services

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, free_port, service_env

KEY, SECRET = "guide-key-0123456789", "guide-viewer-secret-0123456789abcdef-012345"
# the frontend of the guide's CORS case: a page served on another port than the Socket.IO server's
FRONTEND = "http://127.0.0.1:3000"
TAGGED = re.compile(r"(\[(?:HTTP_BROADCASTER|MAIN|SOCKETIO_SERVER|PLANNER|EXECUTOR)\] .*)$")


def tagged_lines(output: str) -> list[str]:
    """The `[TAG] message` part of each line of a service's output (the log format puts time and level first)."""
    return [match.group(1) for line in output.splitlines() if (match := TAGGED.search(line))]


def wait_until(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def run_to_the_end(api_url: str, run_id: str, headers: dict[str, str] | None = None) -> list[str]:
    """Start the demo workflow and return its lines once it has finished."""
    response = httpx.post(f"{api_url}/api/runs", json={"run_id": run_id, "interval_ms": 5}, headers=headers)
    assert response.status_code == 202, response.text
    wait_until(
        lambda: httpx.get(f"{api_url}/api/runs/{run_id}", headers=headers).json()["status"] == "succeeded",
        20,
        f"run {run_id} to succeed",
    )
    lines = httpx.get(f"{api_url}/api/runs/{run_id}/logs", headers=headers).json()
    return [line["message"] for line in lines]


def test_serve_all_walks_the_guide(tmp_path: Path) -> None:
    """`livelog serve all` (the seed's `python main.py`) on a single machine with the guide's 0.0.0.0 bind."""
    sio_port, api_port = free_port(), free_port()
    # at debug level the API echoes each workflow line, as the seed's console did (the journal is quieter)
    env = service_env(
        SOCKETIO_HOST="0.0.0.0",
        SOCKETIO_PORT=sio_port,
        REST_API_PORT=api_port,
        LIVELOG_DATA_DIR=tmp_path / "data",
        LIVELOG_LOG_LEVEL="debug",
    )
    output_path = tmp_path / "serve-all.log"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "livelog", "serve", "all"], env=env, cwd=tmp_path, stdout=output, stderr=output
        )
    sio_url, api_url = f"http://127.0.0.1:{sio_port}", f"http://127.0.0.1:{api_port}"
    try:
        wait_until(
            lambda: all(httpx.get(f"{url}/health", timeout=1).status_code == 200 for url in (sio_url, api_url)),
            20,
            "both services to answer /health",
        )

        # 1. the startup lines, exactly and in the guide's order (livelog's own lines may come between them)
        startup = [
            f"[HTTP_BROADCASTER] Socket.IO endpoint: http://127.0.0.1:{sio_port}",
            "[MAIN] Starting Socket.IO server...",
            f"[SOCKETIO_SERVER] Starting Socket.IO server on 0.0.0.0:{sio_port}",
            "[MAIN] Starting REST API server...",
        ]
        printed = tagged_lines(output_path.read_text())
        assert printed[0] == startup[0], printed
        assert [line for line in printed if line in startup][:4] == startup, printed

        # 2. the good log: the planner's decision, then the executor running the action, in the run and on stdout
        good = [
            "[PLANNER] Decision: kudos-data-retriever",
            "[EXECUTOR] Running kudos-data-retriever...",
            "[EXECUTOR] Running action kudos-data-retriever (type: data_query)",
        ]
        messages = run_to_the_end(api_url, "guide-good")
        start = messages.index(good[0])
        assert messages[start : start + 3] == good
        echoed = [line.split(" (run guide-good #")[0] for line in tagged_lines(output_path.read_text())]
        start = echoed.index(good[0])
        assert echoed[start : start + 3] == good
        assert "Cannot reach" not in output_path.read_text()

        # 3. the guide's checks: `curl .../health`, `curl .../`, `lsof -i :7000`
        health = httpx.get(f"{sio_url}/health").json()
        assert health["status"] == "healthy" and health["service"] == "socketio" and health["port"] == sio_port
        root = httpx.get(f"{sio_url}/")
        assert root.status_code == 200 and "text/html" in root.headers["content-type"]
        listening = subprocess.run(
            ["lsof", "-nP", f"-iTCP:{sio_port}", "-sTCP:LISTEN"], capture_output=True, text=True, check=True
        ).stdout
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert re.search(rf"^python\S*\s+{children[0]}\s.*TCP \*:{sio_port} \(LISTEN\)$", listening, re.M), listening
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def test_bad_log_names_the_unreachable_server_once_per_window(services: Services) -> None:
    """The Socket.IO server stopped: the API's log interleaves one `Cannot reach` line with the workflow's lines."""
    sio, api = services.pair(LIVELOG_LOG_LEVEL="debug")
    sio.stop()
    messages = run_to_the_end(api.url, "guide-bad")
    output = tagged_lines(api.output())
    failures = [i for i, line in enumerate(output) if line.startswith("[HTTP_BROADCASTER] Cannot reach")]
    assert len(failures) == 1, f"one line per rate-limit window, not one per line: {output}"
    assert output[failures[0]].startswith(f"[HTTP_BROADCASTER] Cannot reach Socket.IO server at {sio.url}: ")
    workflow = [i for i, line in enumerate(output) if line.startswith(("[PLANNER]", "[EXECUTOR]"))]
    assert workflow[0] < failures[0] < workflow[-1], "the failure is interleaved with the workflow's lines"
    assert len(messages) > 10


# The guide's four `.env` scenarios, as the API host's `.env` says them, and where the broadcaster sends
ENV_SCENARIOS = {
    "single machine, 0.0.0.0 binds": ("SOCKETIO_HOST=0.0.0.0\nSOCKETIO_PORT=7000\n", "http://127.0.0.1:7000"),
    "Compose-style service name": (
        "SOCKETIO_HOST=0.0.0.0\nSOCKETIO_INTERNAL_HOST=socketio\nSOCKETIO_PORT=7000\n",
        "http://socketio:7000",
    ),
    # 192.0.2.0/24 is for documentation: no traffic goes there (the API only names it at startup)
    "separate machines by IP": ("SOCKETIO_INTERNAL_HOST=192.0.2.10\nSOCKETIO_PORT=7000\n", "http://192.0.2.10:7000"),
    "EC2 behind nginx": (
        "SOCKETIO_HOST=127.0.0.1\nSOCKETIO_PORT=7000\nNEXT_PUBLIC_SOCKETIO_BASE=https://logs.example.com\n",
        "http://127.0.0.1:7000",
    ),
}


@pytest.mark.parametrize("scenario", list(ENV_SCENARIOS))
def test_each_env_scenario_resolves_the_guides_endpoint(tmp_path: Path, scenario: str) -> None:
    dotenv, endpoint = ENV_SCENARIOS[scenario]
    (tmp_path / ".env").write_text(dotenv)
    port = free_port()
    api = Service("api", port, tmp_path, service_env(REST_API_PORT=port, LIVELOG_DATA_DIR=tmp_path / "data"))
    try:
        health = api.start().health()
        assert f"[HTTP_BROADCASTER] Socket.IO endpoint: {endpoint}" in tagged_lines(api.output())
        assert health["broadcaster"]["endpoint"] == endpoint
    finally:
        api.stop()


async def test_a_frontend_on_another_origin_connects_when_allowed(services: Services) -> None:
    """The guide's CORS case: the page's origin in LIVELOG_CORS_ORIGINS connects and gets lines; another is refused
    with a log line naming it."""
    sio, api = services.pair(
        LIVELOG_API_KEYS=KEY, LIVELOG_VIEWER_TOKEN_SECRET=SECRET, LIVELOG_CORS_ORIGINS=f"{FRONTEND}, https://other.test"
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    token = httpx.post(f"{api.url}/api/viewer-tokens", json={"runs": ["guide-cors"]}, headers=headers).json()["token"]

    viewer = await LogSubscriber(sio.url, "guide-cors", token=token, origin=FRONTEND).connect()
    sent = httpx.post(f"{api.url}/api/test-log", json={"run_id": "guide-cors", "message": "hello"}, headers=headers)
    assert sent.status_code == 200, sent.text
    await eventually(lambda: [line["message"] for line in viewer.lines] == ["[TEST] hello"], what="the line")
    await viewer.close()

    # the handshake a page on another port sends, as its browser sends it: refused, saying why
    refused = httpx.get(
        f"{sio.url}/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={"Origin": "http://127.0.0.1:3001"},
    )
    assert refused.status_code == 400
    assert "http://127.0.0.1:3001 is not an accepted origin" in refused.text
    await eventually(lambda: "Refused a connection from origin http://127.0.0.1:3001" in sio.output(), what="the log")
    assert f"nor in LIVELOG_CORS_ORIGINS ({FRONTEND}, https://other.test)" in sio.output()
    assert sio.health()["connections"]["refused_origins"] == 1
