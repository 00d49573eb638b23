"""LIVELOG_SOCKETIO_SOCKET: the Socket.IO server listens on a Unix socket beside its port, for nginx on the same host.

Real `livelog serve` processes; the viewer is python-socketio's client over aiohttp's Unix connector, as nginx dials.
"""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
from conftest import Services

from livelog.subscriber import LogSubscriber
from livelog.testing import eventually, free_port, service_env


async def test_a_viewer_on_the_unix_socket_gets_lines_the_api_sends_to_the_port(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "sio.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left behind by a process that did not stop cleanly: taken over, not an error
    stale.close()
    sio, api = services.pair(LIVELOG_SOCKETIO_SOCKET=str(path))

    assert stat.S_IMODE(path.stat().st_mode) == 0o666, "anyone on the host may connect, as to the loopback port"
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path))) as over_unix:
        health = (await over_unix.get("http://localhost/health")).json()
    assert health["status"] == "healthy" and health["port"] == sio.port

    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session:
        viewer = await LogSubscriber("http://localhost", "over-unix", http_session=session).connect()
        response = httpx.post(f"{api.url}/api/test-log", json={"run_id": "over-unix", "message": "hi"})
        assert response.status_code == 200
        await eventually(lambda: len(viewer.lines) == 1, what="the line over the Unix socket")
        assert viewer.lines[0]["message"] == "[TEST] hi"
        await viewer.close()
    assert httpx.get(f"{sio.url}/health").json()["connections"]["clients"] == 0


def serve_socketio(tmp_path: Path, **settings: object) -> subprocess.Popen[str]:
    env = service_env(LIVELOG_DATA_DIR=str(tmp_path), **settings)
    command = [sys.executable, "-m", "livelog", "serve", "socketio"]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_socket_it_cannot_create_is_a_clear_error(tmp_path: Path) -> None:
    server = serve_socketio(
        tmp_path, SOCKETIO_PORT=free_port(), LIVELOG_SOCKETIO_SOCKET=tmp_path / "missing" / "sio.sock"
    )
    output, _ = server.communicate(timeout=30)
    assert server.returncode != 0
    assert "cannot listen on" in output and "(LIVELOG_SOCKETIO_SOCKET): [Errno 2]" in output
    assert "Traceback" not in output


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = serve_socketio(tmp_path, SOCKETIO_PORT=port, LIVELOG_SOCKETIO_SOCKET=tmp_path / "sio.sock")
        output, _ = server.communicate(timeout=30)
    assert server.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port} (SOCKETIO_HOST, SOCKETIO_PORT): [Errno 98]" in output
    assert "Traceback" not in output


def test_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "sio.sock"
    server = serve_socketio(tmp_path, SOCKETIO_PORT=free_port(), LIVELOG_SOCKETIO_SOCKET=path)
    deadline = time.monotonic() + 20
    while not path.is_socket() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # past its startup
    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Application shutdown complete" in output and "Traceback" not in output
