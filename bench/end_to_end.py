"""End-to-end figures: API -> broadcaster -> Socket.IO server -> real python-socketio clients, on loopback.

Starts a Socket.IO server and an API as `livelog serve` processes in a temporary directory, then for each
case runs a `chatter` workflow and measures at the clients: lines/s, and latency from the line's
timestamp (taken when the workflow logged it) to its arrival. Prints a table; asserts nothing.

    python bench/end_to_end.py [--lines 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import socketio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(component: str, workdir: str, **env: Any) -> subprocess.Popen[bytes]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("SOCKETIO_", "REST_API_", "LIVELOG_"))}
    variables.update({k: str(v) for k, v in env.items()}, LIVELOG_DATA_DIR=f"{workdir}/{component}")
    return subprocess.Popen(
        [sys.executable, "-m", "livelog", "serve", component],
        cwd=workdir,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


async def measure(sio_url: str, api_url: str, lines: int, interval_ms: int, batch: bool, clients: int) -> dict:
    run_id = f"bench-{'batch' if batch else 'line'}-{interval_ms}-{clients}-{time.monotonic_ns()}"
    total = lines + 2
    latencies: list[float] = []
    done = asyncio.Event()
    counts = [0] * clients
    connections = []

    for index in range(clients):
        client = socketio.AsyncClient()

        def record(received: list[dict], index: int = index) -> None:
            now = time.time()
            counts[index] += len(received)
            if index == 0:
                latencies.extend(now - line["ts"] for line in received)
            if all(count >= total for count in counts):
                done.set()

        client.on("log", lambda line, record=record: record([line]))
        client.on("logs", lambda batch_lines, record=record: record(batch_lines))
        await client.connect(sio_url)
        await client.call("subscribe", {"run_id": run_id, "after_seq": 0, "batch": batch})
        connections.append(client)

    started = time.perf_counter()
    async with httpx.AsyncClient() as http:
        body = {
            "workflow": "chatter",
            "run_id": run_id,
            "lines": lines,
            "interval_ms": interval_ms,
        }
        (await http.post(f"{api_url}/api/runs", json=body)).raise_for_status()
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    for client in connections:
        await client.disconnect()
    latencies.sort()
    return {
        "lines/s": total / elapsed,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def main(lines: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        sio_port, api_port = free_port(), free_port()
        processes = [start("socketio", workdir, SOCKETIO_PORT=sio_port)]
        sio_url, api_url = (
            f"http://127.0.0.1:{sio_port}",
            f"http://127.0.0.1:{api_port}",
        )
        wait_healthy(sio_url)
        processes.append(start("api", workdir, SOCKETIO_PORT=sio_port, REST_API_PORT=api_port))
        wait_healthy(api_url)
        cases = [
            ("flat out, one `log` event per line", 0, False, 1),
            ("flat out, `logs` batches", 0, True, 1),
            ("flat out, `logs` batches, 10 clients", 0, True, 10),
            ("~500 lines/s (2 ms apart), per line", 2, False, 1),
            ("~50 lines/s (20 ms apart), per line", 20, False, 1),
        ]
        print(f"{'case':45} {'lines':>6} {'lines/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        try:
            for name, interval, batch, clients in cases:
                count = lines if interval == 0 else min(lines, 10_000 // max(interval, 1))
                result = await measure(sio_url, api_url, count, interval, batch, clients)
                print(
                    f"{name:45} {count:>6} {result['lines/s']:>9.0f} {result['p50 ms']:>8.1f} {result['p99 ms']:>8.1f}"
                )
        finally:
            for process in processes:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000)
    asyncio.run(main(parser.parse_args().lines))
