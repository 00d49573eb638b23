"""`livelog serve all`: both services from one terminal; Ctrl-C stops both cleanly, a dying one stops the other."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from livelog.testing import free_port, service_env


def start_all(tmp_path: Path) -> tuple[subprocess.Popen[str], str, str]:
    sio_port, api_port = free_port(), free_port()
    env = service_env(SOCKETIO_PORT=sio_port, REST_API_PORT=api_port, LIVELOG_DATA_DIR=tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "livelog", "serve", "all"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    urls = f"http://127.0.0.1:{sio_port}", f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if all(httpx.get(f"{url}/health", timeout=1).status_code == 200 for url in urls):
                return process, *urls
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("serve all did not bring both services up")


def test_ctrl_c_stops_both(tmp_path: Path) -> None:
    process, sio_url, api_url = start_all(tmp_path)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    for url in (sio_url, api_url):
        try:
            httpx.get(f"{url}/health", timeout=1)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"{url} still answers")


def test_a_dying_service_stops_the_other(tmp_path: Path) -> None:
    process, _, _ = start_all(tmp_path)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True)
    first_child = int(children.stdout.split()[0])  # the Socket.IO server starts first
    subprocess.run(["kill", "-TERM", str(first_child)], check=True)
    assert process.wait(timeout=20) == 1
    assert "the socketio service exited" in process.stderr.read()
