"""The seed bug: `localhost` resolves to ::1 in VMs and containers, the Socket.IO server listens on 127.0.0.1.

The broadcaster runs in a mount namespace whose /etc/hosts maps `localhost` to ::1 only (needs root and
util-linux `unshare`; CI runs as root). The Socket.IO server is a real one on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, service_env

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private /etc/hosts",
)

CHILD = Path(__file__).with_name("broadcast_once.py")


@pytest.fixture
def sio(shared_pair: tuple[Service, Service]) -> Service:
    """A real Socket.IO server on 127.0.0.1 only (the default bind); each test follows a run of its own."""
    return shared_pair[0]


def broadcast_with_ipv6_localhost(tmp_path: Path, run_id: str, **settings: Any) -> dict[str, Any]:
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 localhost ip6-localhost\n")
    script = f'mount --bind "{hosts}" /etc/hosts && exec "{sys.executable}" "{CHILD}" "{run_id}"'
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        env=service_env(**settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["localhost"] == ["::1"], "the namespace must make localhost resolve to ::1 only"
    return report


async def test_dialling_localhost_fails_and_names_the_cause(tmp_path: Path, sio: Service) -> None:
    client = await LogSubscriber(sio.url, "via-localhost").connect()

    report = broadcast_with_ipv6_localhost(
        tmp_path, "via-localhost", SOCKETIO_INTERNAL_HOST="localhost", SOCKETIO_PORT=sio.port
    )

    assert report["stats"]["sent"] == 0
    assert report["stats"]["last_error_kind"] == "cannot_reach"
    assert any(
        message.startswith(f"[HTTP_BROADCASTER] Cannot reach Socket.IO server at http://localhost:{sio.port}: ")
        for message in report["log"]
    ), report["log"]
    assert client.lines == []
    await client.close()


@pytest.mark.parametrize("socketio_host", [None, "0.0.0.0", "::"])
async def test_default_endpoint_delivers(tmp_path: Path, sio: Service, socketio_host: str | None) -> None:
    run_id = f"via-default-{socketio_host or 'unset'}".replace(":", "v6")
    client = await LogSubscriber(sio.url, run_id).connect()
    settings = {"SOCKETIO_PORT": sio.port}
    if socketio_host:
        settings["SOCKETIO_HOST"] = socketio_host  # the API's copy of a wildcard bind address

    report = broadcast_with_ipv6_localhost(tmp_path, run_id, **settings)

    assert f"[HTTP_BROADCASTER] Socket.IO endpoint: http://127.0.0.1:{sio.port}" in report["log"]
    assert report["stats"]["sent"] == 1, report
    await eventually(lambda: client.seqs() == [1], what="the line at the client")
    await client.close()
