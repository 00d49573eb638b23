"""What one workflow log call costs, as a workflow sees it: `RunLogger(...)` with persistence and the broadcaster.

In this process: a run store on a temporary SQLite file, an HttpBroadcaster to a real `livelog serve socketio`
process (server up) or to a loopback port nothing listens on (server down). Each round logs `--lines` lines,
yielding to the event loop every 100 lines as a workflow awaiting its work does, and times each call alone.
The baseline, measured in the same run: the same call with the line committed to SQLite on its own, the design
before batched writes. Prints p50/p99 in microseconds and the ratio to the baseline; writes
bench/results/log_call.json. Asserts nothing.

    python bench/log_call.py [--lines 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from livelog import sqlite
from livelog.broadcaster import HttpBroadcaster
from livelog.models import LogLine
from livelog.runs import RunLogger
from livelog.store import RunStore
from livelog.testing import Service, free_port, service_env

RESULTS = Path(__file__).parent / "results"


class CommitEachLine(RunStore):
    """The baseline: every line in its own transaction, on the caller's thread (the design before batching)."""

    def append_line(self, line: LogLine) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(sqlite.INSERT_LINE, sqlite.to_row(line))
            self._db.execute("UPDATE runs SET lines = ? WHERE run_id = ?", (line["seq"], line["run_id"]))


async def time_calls(store: RunStore, endpoint: str, lines: int, run_id: str) -> list[float]:
    """Microseconds per call, for `lines` calls."""
    await store.create_run(run_id, "bench", {})
    broadcaster = HttpBroadcaster(endpoint, timeout=1.0, backoff_max=0.5)
    await broadcaster.start()
    emit = RunLogger(run_id, store, broadcaster)
    costs = []
    clock = time.perf_counter_ns
    for number in range(lines):
        started = clock()
        emit(f"[EXECUTOR] bench line {number}")
        costs.append((clock() - started) / 1000)
        if number % 100 == 99:
            await asyncio.sleep(0)
    await store.writer.settle()
    await broadcaster.close()
    return costs


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def main(lines: int, rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        sio = Service("socketio", port, workdir, service_env(SOCKETIO_PORT=port, LIVELOG_DATA_DIR=workdir / "sio"))
        sio.start()
        down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        figures: dict[str, dict[str, float]] = {}
        try:
            for server, endpoint in (("up", sio.url), ("down", down)):
                for design, store_type in (("batched", RunStore), ("commit each line", CommitEachLine)):
                    p50s, p99s = [], []
                    for number in range(rounds):
                        store = store_type(workdir / f"{design}-{server}-{number}.sqlite3")
                        store.start()
                        costs = await time_calls(store, endpoint, lines, f"bench-{number}")
                        await store.close()
                        p50s.append(percentile(costs, 0.50))
                        p99s.append(percentile(costs, 0.99))
                    figures[f"{design}, server {server}"] = {
                        "p50_us": statistics.median(p50s),
                        "p99_us": statistics.median(p99s),
                    }
        finally:
            sio.stop()
    print(f"{'one RunLogger call (median of ' + str(rounds) + ' rounds)':45} {'p50 µs':>8} {'p99 µs':>8}")
    for name, figure in figures.items():
        print(f"{name:45} {figure['p50_us']:>8.1f} {figure['p99_us']:>8.1f}")
    for server in ("up", "down"):
        batched, baseline = figures[f"batched, server {server}"], figures[f"commit each line, server {server}"]
        print(
            f"server {server}: batched/commit-each-line p50 {batched['p50_us'] / baseline['p50_us']:.3f}, "
            f"p99 {batched['p99_us'] / baseline['p99_us']:.3f} (targets: p50 <= 5 µs, p99 <= 25 µs)"
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(main(args.lines, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log_call.json").write_text(
        json.dumps({"lines": args.lines, "rounds": args.rounds, **results}, indent=2)
    )
