"""Real livelog services for tests and benchmarks: `livelog serve` processes on free loopback ports.

Used by app/tests and bench/; nothing here is mocked: a Service is the process systemd would run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from livelog.models import LogLine

# variables of the services that must not leak in from the developer's shell
SERVICE_VARIABLES = ("REST_API_", "SOCKETIO_", "LIVELOG_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def in_process_server(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn in this event loop on a free loopback port; yields its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="the in-process server to listen")
        yield f"http://127.0.0.1:{port}"
    finally:  # a failing test, too, leaves no server behind
        server.should_exit = True
        await task


def service_env(**settings: Any) -> dict[str, str]:
    """This process's environment without livelog's variables, plus `settings` (values made strings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_VARIABLES)}
    env.update({key: str(value) for key, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Service:
    """One `livelog serve <component>` process, started and stopped like systemd would."""

    def __init__(self, component: str, port: int, workdir: Path, env: dict[str, str], host: str = "127.0.0.1") -> None:
        self.component = component
        self.port = port
        self.url = f"http://{host}:{port}"
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{component}-{host}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Service:
        """Start the process and, with `wait`, wait until it answers /health."""
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
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process else None
                raise RuntimeError(f"{self.component} exited {code}:\n{self.output()}")
            try:
                health: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=1).json()
                return health
            except httpx.HTTPError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.component} not healthy after {seconds}s:\n{self.output()}")

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=5).json()
        return health

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_services(*services: Service) -> None:
    """Start several services at once and wait until each answers: their start-ups overlap."""
    for service in services:
        service.start(wait=False)
    for service in services:
        service.wait_healthy()


async def eventually(condition: Callable[[], bool], seconds: float = 15, what: str = "condition") -> None:
    """Wait until `condition()` holds; a bound for a failing test, not a performance claim."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


def make_lines(run_id: str, first: int, last: int) -> list[LogLine]:
    return [
        LogLine(run_id=run_id, seq=seq, ts=time.time(), level="INFO", message=f"line {seq}")
        for seq in range(first, last + 1)
    ]
