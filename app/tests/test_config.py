"""Endpoint resolution: SOCKETIO_INTERNAL_HOST, else a non-wildcard SOCKETIO_HOST, else 127.0.0.1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_locked

from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings, socketio_endpoint
from livelog.store import RunStore

ENV_KEYS = ("SOCKETIO_HOST", "SOCKETIO_PORT", "SOCKETIO_INTERNAL_HOST", "LIVELOG_CORS_ORIGINS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, "http://127.0.0.1:7000"),
        ({"SOCKETIO_HOST": "10.0.0.5"}, "http://10.0.0.5:7000"),
        ({"SOCKETIO_HOST": "10.0.0.5", "SOCKETIO_INTERNAL_HOST": "socketio"}, "http://socketio:7000"),
        ({"SOCKETIO_INTERNAL_HOST": "127.0.0.1", "SOCKETIO_HOST": "0.0.0.0"}, "http://127.0.0.1:7000"),
        ({"SOCKETIO_HOST": "0.0.0.0"}, "http://127.0.0.1:7000"),
        ({"SOCKETIO_HOST": "::"}, "http://127.0.0.1:7000"),
        ({"SOCKETIO_HOST": "::", "SOCKETIO_INTERNAL_HOST": ""}, "http://127.0.0.1:7000"),
        ({"SOCKETIO_INTERNAL_HOST": "::1"}, "http://[::1]:7000"),
        ({"SOCKETIO_INTERNAL_HOST": "fd00::7", "SOCKETIO_PORT": "7100"}, "http://[fd00::7]:7100"),
        ({"SOCKETIO_HOST": "[fd00::7]"}, "http://[fd00::7]:7000"),
    ],
)
def test_endpoint_resolution(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert socketio_endpoint(Settings()) == endpoint


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOCKETIO_INTERNAL_HOST=10.1.2.3\nSOCKETIO_PORT=7001\n")
    assert socketio_endpoint(Settings()) == "http://10.1.2.3:7001"


def test_cors_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVELOG_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("port", ["0", "70000", "seven"])
def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("SOCKETIO_PORT", port)
    with pytest.raises(ValueError, match="socketio_port"):
        Settings()


async def test_startup_logs_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="livelog.broadcaster")
    broadcaster = HttpBroadcaster(socketio_endpoint(Settings()))
    await broadcaster.start()
    await broadcaster.close()
    assert "[HTTP_BROADCASTER] Socket.IO endpoint: http://127.0.0.1:7000" in caplog.messages


@pytest.mark.parametrize("value", ["socketio:7000", "10.0.0.5:7000", "a b", "node1,node2:7000"])
def test_a_port_or_garbage_in_the_host_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOCKETIO_INTERNAL_HOST", value)
    with pytest.raises(ValueError, match="socketio_internal_host"):
        Settings()


def test_a_service_with_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "livelog", "serve", "api"],
        env={**os.environ, "SOCKETIO_INTERNAL_HOST": "socketio:7000"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("livelog: bad configuration: SOCKETIO_INTERNAL_HOST: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("component", "database"), [("api", "api.sqlite3"), ("socketio", "backlog.sqlite3")])
def test_a_service_whose_database_is_locked_says_so_in_one_line(tmp_path: Path, component: str, database: str) -> None:
    """Another process holding the database's write lock (an operator's sqlite3 shell, a second copy of the service):
    the service waits SQLite's busy timeout, then exits with one line naming its data directory, no traceback. The
    API's store exists already, as after a first start: its first write is marking interrupted runs."""
    data = tmp_path / "data"
    data.mkdir()
    if component == "api":
        RunStore(data / database)
    lock = write_locked(data / database)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "livelog", "serve", component],
            env={**os.environ, "LIVELOG_DATA_DIR": str(data), "REST_API_PORT": "1", "SOCKETIO_PORT": "1"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        lock.close()
    assert result.returncode == 1
    assert result.stderr == f"livelog: the {component} service cannot use {data}: database is locked\n"
