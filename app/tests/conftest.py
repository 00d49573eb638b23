"""Fixtures: real `livelog serve` processes (livelog.testing), fresh per test where a test stops or restarts one,
shared per module where tests only talk to them (each such test uses run ids of its own)."""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livelog.testing import Service, free_port, service_env, start_services


def write_locked(path: Path) -> sqlite3.Connection:
    """Another process's connection to the SQLite file at `path`, holding its write lock (a backup, a second API, a
    stalled disk) until the caller commits or rolls back."""
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    return lock


class Services:
    """Starts `livelog serve` processes in one work directory and kills them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def make(self, component: str, port: int | None = None, host: str = "127.0.0.1", **settings: Any) -> Service:
        """A service, configured but not started."""
        port = port or free_port()
        key = "SOCKETIO_PORT" if component == "socketio" else "REST_API_PORT"
        settings.setdefault("LIVELOG_DATA_DIR", str(self.workdir / f"data-{component}-{host}"))
        service = Service(component, port, self.workdir, service_env(**{key: port}, **settings), host=host)
        self.started.append(service)
        return service

    def __call__(self, component: str, port: int | None = None, **settings: Any) -> Service:
        """A service, started and answering /health."""
        service = self.make(component, port, **settings)
        start_services(service)
        return service

    def pair(self, **settings: Any) -> tuple[Service, Service]:
        """A Socket.IO server and an API that broadcasts to it, as on a single host, started together."""
        sio = self.make("socketio", **settings)
        api = self.make("api", SOCKETIO_PORT=sio.port, **settings)
        start_services(sio, api)
        return sio, api

    def stop_all(self) -> None:
        for service in self.started:
            service.stop(signal.SIGKILL)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Services for this test alone."""
    started = Services(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def module_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services shared by the tests of a module."""
    started = Services(tmp_path_factory.mktemp("services"))
    yield started
    started.stop_all()


@pytest.fixture
def pair(services: Services) -> tuple[Service, Service]:
    """A pair for a test that stops or restarts one of them."""
    return services.pair()


@pytest.fixture(scope="session")
def session_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services shared by every test of the session."""
    started = Services(tmp_path_factory.mktemp("session-services"))
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def shared_pair(session_services: Services) -> tuple[Service, Service]:
    """A pair with the default settings, for tests that only talk to it (each with run ids of its own)."""
    return session_services.pair()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence."""
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/bootstrap.sh installs it"
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def wait_listening(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def scrape(service: Service) -> dict[str, float]:
    """Every sample of the service's /metrics, by name and labels."""
    response = httpx.get(f"{service.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
