"""`livelog smoke` against a running pair: exit 0 with the round trip, or the hop that failed."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import Services

from livelog.testing import Service, free_port, service_env, start_services


def smoke(api_url: str, sio_url: str, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "livelog", "smoke", "--api-url", api_url, "--socketio-url", sio_url]
    return subprocess.run(
        [*command, "--timeout", str(timeout)],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def nothing_listening() -> str:
    """The URL of a service that is not running."""
    return f"http://127.0.0.1:{free_port()}"


def test_smoke_passes_and_prints_the_round_trip(shared_pair: tuple[Service, Service]) -> None:
    sio, api = shared_pair
    result = smoke(api.url, sio.url)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"smoke: OK: test line smoke-\w+#1 went .* in \d+\.\d ms\n", result.stdout)


def test_smoke_names_the_stopped_socketio_server(shared_pair: tuple[Service, Service]) -> None:
    _, api = shared_pair
    sio_url = nothing_listening()
    result = smoke(api.url, sio_url)
    assert result.returncode == 2
    assert result.stderr.startswith(f'smoke: FAILED at hop "health": GET {sio_url}/health: ConnectError')


def test_smoke_names_the_api(shared_pair: tuple[Service, Service]) -> None:
    sio, _ = shared_pair
    api_url = nothing_listening()
    result = smoke(api_url, sio.url)
    assert result.returncode == 3
    assert result.stderr.startswith(f'smoke: FAILED at hop "API": GET {api_url}/api/health')


def test_smoke_names_delivery_when_the_broadcaster_is_refused(services: Services) -> None:
    sio = services.make("socketio", LIVELOG_BROADCAST_TOKEN="right")
    api = services.make("api", SOCKETIO_PORT=sio.port, LIVELOG_BROADCAST_TOKEN="wrong")
    start_services(sio, api)
    result = smoke(api.url, sio.url, timeout=1)
    assert result.returncode == 5
    assert 'hop "delivery"' in result.stderr and "HTTP 401" in result.stderr, result.stderr
