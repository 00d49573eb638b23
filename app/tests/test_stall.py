"""A client that subscribes to every run ten times from the start and never reads cannot stall anyone else: its
replay is bounded, it is dropped once its output stays unread, and the server's memory comes back. Nor can one that
reads, but slower than it is sent."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import threading
import time

import httpx
import pytest
import socketio
from conftest import Services

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, make_lines

TOKEN = "stall-broadcast-token"
STALL_SECONDS = 3
RUNS, LINES_PER_RUN = 20, 1000  # what the hostile client asks to be replayed: 20,000 lines


def publish(sio: Service, lines: list[dict[str, object]]) -> None:
    response = httpx.post(
        f"{sio.url}/internal/broadcast", json={"lines": lines}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


def rss_kib(sio: Service) -> int:
    assert sio.process is not None
    with open(f"/proc/{sio.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def frame(text: str) -> bytes:
    """One masked WebSocket text frame, as a client must send it (RFC 6455 5.2)."""
    payload, mask = text.encode(), os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + masked


def hostile_client(sio: Service) -> socket.socket:
    """A raw WebSocket that connects, subscribes to `*` from 0 ten times, and from then on reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: its buffers fill at once
    sock.connect(("127.0.0.1", sio.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{sio.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b"101" in sock.recv(1024).split(b"\r\n")[0]
    sock.sendall(frame("40"))
    subscribe = json.dumps(["subscribe", {"run_id": "*", "after_seq": 0}])
    for _ in range(10):
        sock.sendall(frame(f"42{subscribe}"))
    return sock


def read_slowly(sock: socket.socket) -> None:
    """2 KB every 0.1 s (20 KB/s) until the server drops the connection: less than half of what `*` sends it."""
    try:
        while sock.recv(2048):
            time.sleep(0.1)
    except OSError:  # the reset the server drops it with
        pass


async def live_latencies(
    sio: Service, client: LogSubscriber, arrivals: dict[int, float], run_id: str, seconds: float
) -> list[float]:
    """Publish ~500 lines/s of `run_id` for `seconds`; return each line's delay to `client`, in ms."""
    first = client.last_seq() + 1
    seq, started = first, time.monotonic()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        while time.monotonic() - started < seconds:
            lines = make_lines(run_id, seq, seq + 9)
            response = await http.post(f"{sio.url}/internal/broadcast", json={"lines": lines})
            assert response.status_code == 200
            seq += 10
            await asyncio.sleep(0.02)
    await eventually(lambda: client.last_seq() >= seq - 1, what="the normal client to get every line")
    return [(arrivals[line["seq"]] - line["ts"]) * 1000 for line in client.lines if line["seq"] >= first]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.timeout(180)
async def test_a_client_that_never_reads_stalls_nobody_and_is_dropped(services: Services) -> None:
    sio = services("socketio", LIVELOG_BROADCAST_TOKEN=TOKEN, LIVELOG_STALLED_CLIENT_SECONDS=STALL_SECONDS)
    for run in range(RUNS):
        publish(sio, make_lines(f"old-{run}", 1, LINES_PER_RUN))
    arrivals: dict[int, float] = {}
    normal = LogSubscriber(sio.url, "live", on_line=lambda line: arrivals.update({line["seq"]: time.time()}))
    await normal.connect()
    await live_latencies(sio, normal, arrivals, "live", 3)  # warm up
    baseline_rss = rss_kib(sio)
    quiet = await live_latencies(sio, normal, arrivals, "live", 5)

    hostile, slow = hostile_client(sio), hostile_client(sio)
    reader = threading.Thread(target=read_slowly, args=(slow,), daemon=True)
    reader.start()
    await eventually(lambda: sio.health()["connections"]["clients"] == 3, what="the two other clients to connect")
    noisy = await live_latencies(sio, normal, arrivals, "live", 10)
    await eventually(
        lambda: sio.health()["connections"]["dropped_unread"] == 2, seconds=30, what="both other clients dropped"
    )
    health = sio.health()["connections"]
    assert (health["clients"], health["open"]) == (1, 1), "their connections are gone, the normal one stays"
    assert sio.output().count("left its output unread") == 2
    reader.join(timeout=5)
    assert not reader.is_alive(), "the slow reader saw its connection end"
    await live_latencies(sio, normal, arrivals, "live", 3)  # life goes on
    after_rss = rss_kib(sio)
    hostile.close()
    slow.close()

    print(
        f"\nnormal client p99: {p99(quiet):.1f} ms alone, {p99(noisy):.1f} ms beside the two others "
        f"({p99(noisy) / p99(quiet):.2f}x); Socket.IO RSS {baseline_rss / 1024:.1f} MiB before, "
        f"{after_rss / 1024:.1f} MiB after"
    )
    assert normal.gaps == [] and normal.duplicates == 0
    assert after_rss - baseline_rss < 10 * 1024, "memory back within 10 MB of its baseline"
    await normal.close()


@pytest.mark.timeout(120)
async def test_a_long_polling_client_that_stops_asking_is_dropped_and_one_that_asks_is_not(services: Services) -> None:
    """Long-polling: the client takes its packets with GETs. One that answers pings (a POST) but never GETs again would
    have every line queued for it; it is closed once its output waits unread for LIVELOG_STALLED_CLIENT_SECONDS. A
    real long-polling client, which GETs all along, gets every line and stays."""
    sio = services("socketio", LIVELOG_BROADCAST_TOKEN=TOKEN, LIVELOG_STALLED_CLIENT_SECONDS=STALL_SECONDS)
    polling = socketio.AsyncClient()
    got: list[int] = []
    polling.on("log", lambda line: got.append(line["seq"]))
    await polling.connect(sio.url, transports=["polling"])
    assert (await polling.call("subscribe", {"run_id": "polled", "after_seq": 0}))["ok"]

    async with httpx.AsyncClient(base_url=f"{sio.url}/socket.io/") as http:
        opened = await http.get("", params={"EIO": "4", "transport": "polling"})
        sid = json.loads(opened.text[1:])["sid"]  # "0{...}": the open packet
        session = {"EIO": "4", "transport": "polling", "sid": sid}
        subscribe = json.dumps(["subscribe", {"run_id": "polled", "after_seq": 0}])
        for packet in ("40", f"42{subscribe}"):  # connect, subscribe; from now on, no GET
            assert (await http.post("", params=session, content=packet)).text == "OK"
        seq = 0
        while (pong := await http.post("", params=session, content="3")).status_code == 200 and seq < 2000:
            publish(sio, make_lines("polled", seq + 1, seq + 10))  # a pong above: it is "alive"
            seq += 10
            await asyncio.sleep(0.1)
        assert pong.status_code == 400 and "Invalid session" in pong.text, "its session is gone (no 500)"
        assert sio.health()["connections"]["dropped_unread"] == 1, "the client that stopped asking was dropped"
        assert (await http.get("", params=session)).status_code == 400
    publish(sio, make_lines("polled", seq + 1, seq + 10))
    await eventually(lambda: len(got) == seq + 10, what="every line to the long-polling client")
    assert got == list(range(1, seq + 11)) and polling.connected
    assert sio.output().count("left its output unread") == 1
    metrics = httpx.get(f"{sio.url}/metrics").text
    assert "livelog_polling_sessions_dropped_unread_total 1.0" in metrics
    await polling.disconnect()
