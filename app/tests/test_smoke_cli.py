"""`livelog smoke` against a running pair: exit 0 with the round trip, or the hop that failed."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

from conftest import Service, service_env


def smoke(api: Service, sio: Service) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "livelog", "smoke", "--api-url", api.url, "--socketio-url", sio.url]
    return subprocess.run(
        [*command, "--timeout", "3"],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_smoke_passes_and_prints_the_round_trip(pair: tuple[Service, Service]) -> None:
    sio, api = pair
    result = smoke(api, sio)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"smoke: OK: test line smoke-\w+#1 went .* in \d+\.\d ms\n", result.stdout)


def test_smoke_names_the_stopped_socketio_server(pair: tuple[Service, Service]) -> None:
    sio, api = pair
    sio.stop()
    result = smoke(api, sio)
    assert result.returncode == 2
    assert result.stderr.startswith(f'smoke: FAILED at hop "health": GET {sio.url}/health: ConnectError')


def test_smoke_names_the_api(pair: tuple[Service, Service]) -> None:
    sio, api = pair
    api.stop()
    result = smoke(api, sio)
    assert result.returncode == 3
    assert result.stderr.startswith(f'smoke: FAILED at hop "API": GET {api.url}/api/health')


def test_smoke_names_delivery_when_the_broadcaster_is_refused(services: Callable[..., Service]) -> None:
    sio = services("socketio", LIVELOG_BROADCAST_TOKEN="right")
    api = services("api", SOCKETIO_PORT=sio.port, LIVELOG_BROADCAST_TOKEN="wrong")
    result = smoke(api, sio)
    assert result.returncode == 5
    assert 'hop "delivery"' in result.stderr and "HTTP 401" in result.stderr, result.stderr
