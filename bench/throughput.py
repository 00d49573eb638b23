"""Throughput end to end, against two baselines measured in the same run, on loopback.

- livelog: a `chatter` run with no pause between lines, through the API's RunLogger, store and broadcaster, the
  Socket.IO server's hub, to one real python-socketio client subscribed for `logs` batches (and, another case,
  for one `log` event per line). The run logs 200 lines to each turn of its event loop (`burst`), as the ceiling
  builds each batch of 200 and yields once to emit it, so the two pay for the same load; a third case logs a line
  to each turn, as a workflow awaiting something between lines does (a turn costs the API 2 to 3 µs of CPU here,
  with the store's writer thread taking the GIL at turns; the ceiling pays it once a batch, not 200 times);
- the ceiling: bench/emit_server.py, a bare python-socketio server emitting the same batches of 200 in-process;
- the seed's broadcaster style: a new httpx client per line, awaited, posting each line to the Socket.IO server.

Lines/s are counted at the client, from the request that starts the run to the last line. Each round runs every
case once, in turn; a figure is the median of `--rounds`, and livelog/ceiling and livelog/seed are the medians of
each round's own ratio. Prints them, and where the CPU went: each process's CPU time per line (from /proc), the
client's being this process. Writes bench/results/throughput.json. Asserts nothing. The seed-style baseline is
bounded to `--seed-lines` lines (it is slow).

    python bench/throughput.py [--lines 100000] [--rounds 5] [--seed-lines 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import socketio
from emit_server import BATCH  # bench/emit_server.py, beside this file
from fanout import cpu_seconds

from livelog.models import Event
from livelog.testing import Service, free_port, service_env, start_services

RESULTS = Path(__file__).parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CLIENT = "client"


CEILING = "ceiling (in-process emit, batches of 200)"
BATCHED = "livelog, `logs` batches, 1 client, 200 lines a turn"
TURN_PER_LINE = "livelog, `logs` batches, 1 client, 1 line a turn"
PER_LINE = "livelog, `log` per line, 1 client, 200 lines a turn"
SEED = "seed style (new httpx client per line)"


async def count_at_client(
    url: str, total: int, start: Callable[[socketio.AsyncClient], Awaitable[None]], subscribe: dict[str, object] | None
) -> float:
    """Lines/s at one client, from `start` until `total` lines have arrived."""
    client = socketio.AsyncClient()
    received = 0
    done = asyncio.Event()

    def record(count: int) -> None:
        nonlocal received
        received += count
        if received >= total:
            done.set()

    client.on(Event.LINE, lambda _line: record(1))
    client.on(Event.BATCH, lambda lines: record(len(lines)))
    await client.connect(url)
    if subscribe is not None:
        await client.call("subscribe", subscribe)
    started = time.perf_counter()
    await start(client)
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    except TimeoutError:
        raise RuntimeError(f"{received} of {total} lines arrived at {url} within 60 s") from None
    elapsed = time.perf_counter() - started
    await client.disconnect()
    return total / elapsed


async def livelog_rate(
    sio: Service, api: Service, http: httpx.AsyncClient, lines: int, batch: bool, burst: int = BATCH
) -> float:
    """`http` is made once, before any clock starts: a new httpx client loads the CA bundle, about 20 ms here. The
    run logs `burst` lines to each turn of its event loop."""
    run_id = f"bench-{time.monotonic_ns()}"

    async def start(_client: socketio.AsyncClient) -> None:
        body = {"workflow": "chatter", "run_id": run_id, "lines": lines, "interval_ms": 0, "burst": burst}
        (await http.post(f"{api.url}/api/runs", json=body)).raise_for_status()

    subscribe = {"run_id": run_id, "after_seq": 0, "batch": batch}
    return await count_at_client(sio.url, lines + 2, start, subscribe)  # chatter adds two lines of its own


async def ceiling_rate(url: str, lines: int) -> float:
    async def start(client: socketio.AsyncClient) -> None:
        await client.emit("go", lines)

    return await count_at_client(url, lines, start, None)


async def seed_style_rate(sio: Service, lines: int) -> float:
    run_id = f"seed-{time.monotonic_ns()}"

    async def start(_client: socketio.AsyncClient) -> None:
        for seq in range(1, lines + 1):
            line = {"run_id": run_id, "seq": seq, "ts": time.time(), "level": "INFO", "message": f"line {seq}"}
            async with httpx.AsyncClient() as http:  # a new client per line, as the seed's broadcaster did
                await http.post(f"{sio.url}/internal/broadcast", json={"lines": [line]})

    return await count_at_client(sio.url, lines, start, {"run_id": run_id, "after_seq": 0, "batch": True})


class CpuPerLine:
    """Each process's CPU time per line over the rounds of a case, the client's (this process) included."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self.by_case: dict[str, dict[str, list[float]]] = {}

    def times(self) -> dict[str, float]:
        times = {
            name: cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), CLOCK_TICKS)
            for name, pid in self.processes.items()
        }
        return {**times, CLIENT: time.process_time()}

    def add(self, case: str, before: dict[str, float], after: dict[str, float], lines: int) -> None:
        for name in after:
            self.by_case.setdefault(case, {}).setdefault(name, []).append(1e6 * (after[name] - before[name]) / lines)

    def medians(self) -> dict[str, dict[str, float]]:
        return {
            case: {name: round(statistics.median(us), 2) for name, us in by_name.items()}
            for case, by_name in self.by_case.items()
        }


async def interleaved(
    rounds: int, cases: dict[str, tuple[Callable[[], Awaitable[float]], int]], cpu: CpuPerLine
) -> dict[str, list[float]]:
    """Lines/s of each case in each round. A round runs every case once, in turn, so a change in the machine's load
    (it is shared) weighs on the baselines and on livelog alike."""
    rates: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, (measure, lines) in cases.items():
            before = cpu.times()
            rates[case].append(await measure())
            cpu.add(case, before, cpu.times(), lines)
    return rates


def median_ratio(rates: dict[str, list[float]], case: str, baseline: str) -> float:
    """The median over the rounds of `case` against the baseline measured in the same round."""
    return statistics.median(rate / base for rate, base in zip(rates[case], rates[baseline], strict=True))


async def main(lines: int, rounds: int, seed_lines: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sio_port, api_port, ceiling_port = free_port(), free_port(), free_port()
        sio = Service(
            "socketio", sio_port, workdir, service_env(SOCKETIO_PORT=sio_port, LIVELOG_DATA_DIR=workdir / "s")
        )
        # a flat-out run logs faster than any network: the queue holds a whole run, so nothing is dropped (checked)
        api_env = service_env(
            SOCKETIO_PORT=sio_port, REST_API_PORT=api_port, LIVELOG_DATA_DIR=workdir / "a", LIVELOG_QUEUE_SIZE=lines * 2
        )
        api = Service("api", api_port, workdir, api_env)
        start_services(sio, api)
        ceiling = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).parent / "emit_server.py"), str(ceiling_port)
        )
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(f"{ceiling_url}/socket.io/?EIO=4&transport=polling", timeout=1)
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            assert api.process is not None and sio.process is not None
            cpu = CpuPerLine({"API": api.process.pid, "Socket.IO": sio.process.pid, "emit server": ceiling.pid})
            http = httpx.AsyncClient()
            cases: dict[str, tuple[Callable[[], Awaitable[float]], int]] = {
                CEILING: (lambda: ceiling_rate(ceiling_url, lines), lines),
                BATCHED: (lambda: livelog_rate(sio, api, http, lines, True), lines),
                TURN_PER_LINE: (lambda: livelog_rate(sio, api, http, lines, True, burst=1), lines),
                PER_LINE: (lambda: livelog_rate(sio, api, http, lines, False), lines),
                SEED: (lambda: seed_style_rate(sio, seed_lines), seed_lines),
            }
            async with http:
                rates = await interleaved(rounds, cases, cpu)
            dropped = api.health()["broadcaster"]["dropped"]
        finally:
            ceiling.terminate()
            await ceiling.wait()
            for service in (api, sio):
                service.stop()
    figures = {case: statistics.median(case_rates) for case, case_rates in rates.items()}
    ratios = {
        "livelog/ceiling, 200 lines a turn": median_ratio(rates, BATCHED, CEILING),
        "livelog/ceiling, 1 line a turn": median_ratio(rates, TURN_PER_LINE, CEILING),
        "livelog/seed style": median_ratio(rates, BATCHED, SEED),
    }
    print(f"{'throughput, lines/s at the client (median of ' + str(rounds) + ' rounds)':55} {'lines/s':>10}")
    for name, rate in figures.items():
        print(f"{name:55} {rate:>10.0f}")
    print(f"lines the broadcaster dropped: {dropped}")
    for case, name in (
        (BATCHED, "livelog/ceiling, 200 lines a turn"),
        (TURN_PER_LINE, "livelog/ceiling, 1 line a turn"),
    ):
        each = " ".join(f"{rate / base:.2f}" for rate, base in zip(rates[case], rates[CEILING], strict=True))
        print(f"{name} {ratios[name]:.2f} (target >= 0.5; median of the rounds' own: {each})")
    print(f"livelog/seed style {ratios['livelog/seed style']:.0f} (target >= 2000)")
    cpu_per_line = cpu.medians()
    names = [*cpu.processes, CLIENT]
    print(f"{'CPU per line, µs (median)':55}" + "".join(f"{name:>12}" for name in names) + f"{'in all':>10}")
    for case in (CEILING, BATCHED, TURN_PER_LINE):
        us = cpu_per_line[case]
        print(f"{case:55}" + "".join(f"{us[name]:>12.1f}" for name in names) + f"{sum(us.values()):>10.1f}")
    return {**figures, "ratios": ratios, "lines_per_s_by_round": rates, "cpu_us_per_line": cpu_per_line}


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the longest run there is: a shorter one weighs the start (a request, the first batch) more than the flow
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed-lines", type=int, default=300)
    args = parser.parse_args()
    results = asyncio.run(main(args.lines, args.rounds, args.seed_lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(
        json.dumps({"lines": args.lines, "rounds": args.rounds, **results}, indent=2)
    )
