"""Real services for the tests: `livelog serve` processes on free loopback ports, and real Socket.IO clients."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from livelog.subscriber import LogSubscriber as LogClient  # noqa: F401  (the tests' client)

# variables of the services that must not leak in from the developer's shell
SERVICE_VARIABLES = ("REST_API_", "SOCKETIO_", "LIVELOG_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_VARIABLES)}
    env.update({key: str(value) for key, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Service:
    """One `livelog serve <component>` process, started and stopped like systemd would."""

    def __init__(self, component: str, port: int, workdir: Path, env: dict[str, str]) -> None:
        self.component = component
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{component}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livelog", "serve", self.component],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, seconds: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.component} exited {self.process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).json()
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.component} not healthy after {seconds}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: services("socketio", LIVELOG_BROADCAST_TOKEN="t") starts one and stops it after the test."""
    started: list[Service] = []

    def start(component: str, port: int | None = None, wait: bool = True, **settings: Any) -> Service:
        port = port or free_port()
        key = "SOCKETIO_PORT" if component == "socketio" else "REST_API_PORT"
        settings.setdefault("LIVELOG_DATA_DIR", str(tmp_path / f"data-{component}"))
        service = Service(component, port, tmp_path, service_env(**{key: port}, **settings))
        started.append(service)
        return service.start(wait=wait)

    yield start
    for service in started:
        service.stop(signal.SIGKILL)


@pytest.fixture
def pair(services: Callable[..., Service]) -> tuple[Service, Service]:
    """A Socket.IO server and an API that broadcasts to it, as on a single host."""
    sio = services("socketio")
    api = services("api", SOCKETIO_PORT=sio.port)
    return sio, api


async def eventually(condition: Callable[[], bool], seconds: float = 15, what: str = "condition") -> None:
    """Wait until `condition()` holds; a bound for a failing test, not a performance claim."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


def make_lines(run_id: str, first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "seq": seq, "ts": time.time(), "level": "INFO", "message": f"line {seq}"}
        for seq in range(first, last + 1)
    ]
