"""End-to-end figures: API -> broadcaster -> Socket.IO server -> real python-socketio clients, on loopback.

Starts a Socket.IO server and an API as `livelog serve` processes in a temporary directory, then for each
case runs a `chatter` workflow and measures at the clients: lines/s, and latency from the line's
timestamp (taken when the workflow logged it) to its arrival. Each round runs every case once, in turn; each
figure is the median of `--rounds`. Prints a table and writes bench/results/end_to_end.json; asserts nothing.
(Loopback, no nginx in between.)

    python bench/end_to_end.py [--lines 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import socketio

from livelog.models import Event
from livelog.testing import Service, free_port, service_env, start_services

RESULTS = Path(__file__).parent / "results"


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

        client.on(Event.LINE, lambda line, record=record: record([line]))
        client.on(Event.BATCH, lambda batch_lines, record=record: record(batch_lines))
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


async def main(lines: int, rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sio_port, api_port = free_port(), free_port()
        sio_env = service_env(SOCKETIO_PORT=sio_port, LIVELOG_DATA_DIR=workdir / "sio")
        sio = Service("socketio", sio_port, workdir, sio_env)
        # the queue holds a whole flat-out run: what is measured is delivery, not what a full queue drops
        api_env = service_env(
            SOCKETIO_PORT=sio_port,
            REST_API_PORT=api_port,
            LIVELOG_DATA_DIR=workdir / "api",
            LIVELOG_QUEUE_SIZE=lines * 2,
        )
        api = Service("api", api_port, workdir, api_env)
        start_services(sio, api)
        sio_url, api_url = sio.url, api.url
        cases = [
            ("flat out, one `log` event per line", 0, False, 1),
            ("flat out, `logs` batches", 0, True, 1),
            ("flat out, `logs` batches, 10 clients", 0, True, 10),
            ("~500 lines/s (2 ms apart), per line", 2, False, 1),
            ("~50 lines/s (20 ms apart), per line", 20, False, 1),
        ]
        by_round: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in cases}
        try:
            for _ in range(rounds):
                for name, interval, batch, clients in cases:
                    count = lines if interval == 0 else min(lines, 10_000 // max(interval, 1))
                    by_round[name].append(await measure(sio_url, api_url, count, interval, batch, clients))
        finally:
            for service in (api, sio):
                service.stop()
    figures = {
        name: {figure: statistics.median(result[figure] for result in results) for figure in results[0]}
        for name, results in by_round.items()
    }
    print(f"{'case (median of ' + str(rounds) + ' rounds)':45} {'lines/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, result in figures.items():
        print(f"{name:45} {result['lines/s']:>9.0f} {result['p50 ms']:>8.1f} {result['p99 ms']:>8.1f}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(main(args.lines, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end.json").write_text(json.dumps(results, indent=2))
