"""The clients of `bench/fanout.py --client python`: python-socketio, run on the deployed host with the livelog
venv's Python.

Connects --clients real python-socketio clients through nginx (WebSocket, a viewer token, each process's clients
spread over many loopback source addresses so nginx's per-address limits are not what is measured), subscribes
each to --run-id for `logs` batches, prints `ready` when all are subscribed, then records every line's latency
(arrival minus the line's `ts`, taken when the workflow logged it; the host's clock is the API's) until each
client has --lines lines or --timeout passes. Prints one JSON object: delivered, expected, latency quantiles,
disconnects, connect failures; then the clients all leave at once on a line on stdin (or its end).

    fanout_clients.py --url https://127.0.0.1 --token T --run-id R --lines 20 --clients 5000 --processes 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import ssl
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import socketio
import uvloop

PER_ADDRESS = 15  # below nginx's livelog_nginx_connections_per_client (20)
IN_FLIGHT = 20  # handshakes one process has going at once (nginx lets a client address burst 20)
CONNECT_ATTEMPTS = 3


def source_address(n: int) -> str:
    # the third byte first: nginx's ip_hash (several Socket.IO nodes) spreads clients by their first three bytes
    return f"127.0.{n % 250 + 1}.{n // 250 + 2}"


class Viewer:
    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.seqs: set[int] = set()
        self.latencies: list[float] = []
        self.disconnects = 0
        self.retries = 0
        self.done = asyncio.Event()

    def receive(self, batch: list[dict[str, Any]]) -> None:
        now = time.time()
        for line in batch:
            self.latencies.append(now - line["ts"])
            self.seqs.add(line["seq"])
        if len(self.seqs) >= self.lines:
            self.done.set()


class Sessions:
    """One aiohttp session per loopback source address, and one TLS context for them all: python-engineio would
    make a context per connection (loading the system's CAs each time, about 0.9 MB a client)."""

    def __init__(self) -> None:
        self.tls = ssl.create_default_context()
        self.tls.check_hostname, self.tls.verify_mode = False, ssl.CERT_NONE  # nginx on loopback, its own cert
        self.by_address: dict[str, aiohttp.ClientSession] = {}

    def of(self, n: int) -> aiohttp.ClientSession:
        address = source_address(n // PER_ADDRESS)
        if address not in self.by_address:
            connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
            self.by_address[address] = aiohttp.ClientSession(connector=connector)
        return self.by_address[address]

    async def close(self) -> None:
        for session in self.by_address.values():
            await session.close()


async def connect(
    args: argparse.Namespace, n: int, gate: asyncio.Semaphore, sessions: Sessions
) -> tuple[socketio.AsyncClient, Viewer]:
    viewer = Viewer(args.lines)
    client = socketio.AsyncClient(
        http_session=sessions.of(n), websocket_extra_options={"ssl": sessions.tls}, reconnection=False
    )
    client.on("logs", viewer.receive)

    def gone() -> None:
        viewer.disconnects += 1

    client.on("disconnect", gone)
    for attempt in range(CONNECT_ATTEMPTS):  # a viewer's browser retries a refused handshake too
        try:
            async with gate:  # the wait for the gate does not count against the handshake's 60 s
                handshake = client.connect(args.url, auth={"token": args.token}, transports=["websocket"])
                await asyncio.wait_for(handshake, timeout=60)
            break
        except (socketio.exceptions.ConnectionError, TimeoutError):
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            viewer.retries += 1
            await asyncio.sleep(1 + attempt)
    ack = await client.call("subscribe", {"run_id": args.run_id, "after_seq": 0, "batch": True}, timeout=60)
    if not ack.get("ok"):
        raise RuntimeError(f"subscribe refused: {ack}")
    return client, viewer


async def clients(args: argparse.Namespace, first: int, count: int, pipe: Connection) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)
    sessions = Sessions()
    connecting = (connect(args, n, gate, sessions) for n in range(first, first + count))
    results = await asyncio.gather(*connecting, return_exceptions=True)
    connected = [result for result in results if not isinstance(result, BaseException)]
    failures: dict[str, int] = {}
    for result in results:
        if isinstance(result, BaseException):
            kind = f"{type(result).__name__}: {str(result)[:80]}"
            failures[kind] = failures.get(kind, 0) + 1
    pipe.send({"connected": len(connected)})
    viewers = [viewer for _, viewer in connected]
    cpu_before = time.process_time()
    waits = [asyncio.create_task(viewer.done.wait()) for viewer in viewers]
    if waits:
        await asyncio.wait(waits, timeout=args.timeout)
    cpu_s = time.process_time() - cpu_before
    latencies = [latency for viewer in viewers for latency in viewer.latencies]
    report = {
        "delivered": sum(len(viewer.seqs) for viewer in viewers),
        "disconnects": sum(viewer.disconnects for viewer in viewers),
        "connect_retries": sum(viewer.retries for viewer in viewers),
        "failures": failures,
        "latencies": latencies,
        "cpu_s": cpu_s,
    }
    pipe.send(report)
    with contextlib.suppress(EOFError):  # leave: main has every report by then
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    # all at once, and bounded: one by one, a thousand disconnects from a loaded server take minutes
    await asyncio.wait(
        [asyncio.create_task(client.disconnect()) for client, _ in connected] or [asyncio.sleep(0)], timeout=30
    )
    await sessions.close()


def worker(args: argparse.Namespace, first: int, count: int, pipe: Connection) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per client: the soft limit may be 1,024
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # uvloop, as the servers run: the clients share the host's cores with what they measure
    uvloop.run(clients(args, first, count, pipe))


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="https://127.0.0.1")
    parser.add_argument("--token", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    share = -(-args.clients // args.processes)
    pipes, processes = [], []
    started = time.monotonic()
    for p in range(args.processes):
        first, count = p * share, min(share, args.clients - p * share)
        if count <= 0:
            break
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=worker, args=(args, first, count, theirs), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    connected = sum(pipe.recv()["connected"] for pipe in pipes)
    print(json.dumps({"ready": connected, "connect_s": round(time.monotonic() - started, 1)}), flush=True)
    reports = [pipe.recv() for pipe in pipes]
    latencies = [latency for report in reports for latency in report["latencies"]]
    failures: dict[str, int] = {}
    for report in reports:
        for kind, n in report["failures"].items():
            failures[kind] = failures.get(kind, 0) + n
    summary = {
        "clients": args.clients,
        "connected": connected,
        "expected": args.clients * args.lines,
        "delivered": sum(report["delivered"] for report in reports),
        "disconnects": sum(report["disconnects"] for report in reports),
        "connect_retries": sum(report["connect_retries"] for report in reports),
        "connect_failures": failures,
        "clients_cpu_s": round(sum(report["cpu_s"] for report in reports), 2),
        "p50_ms": None if not latencies else round(1000 * quantile(latencies, 0.5), 2),  # type: ignore[operator]
        "p99_ms": None if not latencies else round(1000 * quantile(latencies, 0.99), 2),  # type: ignore[operator]
        "max_ms": None if not latencies else round(1000 * max(latencies), 2),
    }
    print(json.dumps(summary), flush=True)
    sys.stdin.readline()
    for pipe in pipes:
        pipe.send("leave")
    for process in processes:
        process.join(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
