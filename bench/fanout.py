"""Latency and fan-out through a real nginx: the deployment `make deploy-local` made (a systemd container).

Each case starts a `chatter` run at a steady rate through nginx's /api/ (with the deployment's API key) while N
python-socketio clients, on the container and through its nginx (TLS, WebSocket, a viewer token), watch it
(bench/fanout_clients.py, several processes). Reports per case: lines delivered/expected, latency p50/p99/max
(the line's timestamp, when the workflow logged it, to its arrival at a client), disconnects, and the Socket.IO
server's RSS per connection and CPU while the run streamed. The first cases, one client at 50 and 500 lines/s,
are the latency through nginx; then N clients at a low rate, to the largest N asked for. Writes
bench/results/fanout.json; asserts nothing. Load stays on this machine (the container) and every case ends by
itself (a bounded number of lines; the clients give up after --timeout).

    make deploy-local && python bench/fanout.py [--clients 1000,5000] [--container livelog-local]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STATE = ROOT / ".local" / "deploy-local"
LIVELOG = "/opt/livelog/current/bin"
CHATTER_OWN_LINES = 2  # the planner's decision and the executor's announcement


def in_container(container: str, *command: str) -> str:
    return subprocess.run(["podman", "exec", container, *command], check=True, capture_output=True, text=True).stdout


def cpu_seconds(stat: str, ticks: int) -> float:
    """User and system CPU time of a process, from its /proc/<pid>/stat."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def socketio_process(container: str) -> tuple[int, float, float]:
    """The Socket.IO server's RSS (bytes) and CPU time (s), and the CPU time of nginx's processes, from /proc."""
    pid = in_container(container, "systemctl", "show", "-p", "MainPID", "--value", "livelog-socketio").strip()
    status = in_container(container, "cat", f"/proc/{pid}/status")
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    ticks = int(in_container(container, "getconf", "CLK_TCK"))
    stats = in_container(container, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null || true").splitlines()
    nginx = sum(cpu_seconds(stat, ticks) for stat in stats if " (nginx) " in stat)
    socketio = cpu_seconds(in_container(container, "cat", f"/proc/{pid}/stat"), ticks)
    return rss_kb * 1024, socketio, nginx


async def wait_healthy(url: str) -> None:
    async with httpx.AsyncClient(verify=str(STATE / "ca.pem"), timeout=5) as http:
        for _ in range(100):
            try:
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}/health did not answer 200 after a restart")


async def run_case(args: argparse.Namespace, token: str, api_key: str, clients: int, rate: int) -> dict[str, object]:
    lines = rate * args.seconds
    run_id = f"fanout-{clients}-{rate}-{time.monotonic_ns()}"
    if clients > 1:  # a fresh process, so its RSS before the crowd is not what earlier cases left behind
        in_container(args.container, "systemctl", "restart", "livelog-socketio")
        await wait_healthy(args.url)
    rss_before, _, _ = socketio_process(args.container)
    watchers = await asyncio.create_subprocess_exec(
        "podman", "exec", args.container, f"{LIVELOG}/python", "/root/fanout_clients.py",
        "--url", "https://127.0.0.1", "--token", token, "--run-id", run_id,
        "--lines", str(lines + CHATTER_OWN_LINES), "--clients", str(clients),
        "--processes", str(min(args.processes, clients)), "--timeout", str(args.seconds + 60),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watchers.stdout is not None
    ready = json.loads(await watchers.stdout.readline())
    rss_connected, cpu_before, nginx_before = socketio_process(args.container)
    async with httpx.AsyncClient(verify=str(STATE / "ca.pem"), timeout=30) as http:
        body = {"workflow": "chatter", "run_id": run_id, "lines": lines, "interval_ms": 1000 // rate}
        response = await http.post(f"{args.url}/api/runs", json=body, headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()
    summary = json.loads(await asyncio.wait_for(watchers.stdout.readline(), timeout=args.seconds + 300))
    await watchers.wait()
    _, cpu_after, nginx_after = socketio_process(args.container)
    return {
        **summary,
        "rate_lines_per_s": rate,
        "connect_s": ready["connect_s"],
        "rss_per_connection_kib": round((rss_connected - rss_before) / 1024 / max(1, ready["ready"]), 1),
        "socketio_rss_mib": round(rss_connected / 2**20, 1),
        "socketio_cpu_share": round((cpu_after - cpu_before) / args.seconds, 2),
        # the rest of what shares the host's cores while the run streams: nginx, and the clients themselves
        "nginx_cpu_share": round((nginx_after - nginx_before) / args.seconds, 2),
        "clients_cpu_share": round(summary["clients_cpu_s"] / args.seconds, 2),
        "host_cores": int(in_container(args.container, "nproc")),
    }


async def main(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    if not (STATE / "api-key").exists():
        sys.exit("bench/fanout.py: no deployment to measure: run `make deploy-local` first")
    api_key = (STATE / "api-key").read_text().strip()
    clients_script = Path(__file__).with_name("fanout_clients.py")
    subprocess.run(["podman", "cp", str(clients_script), f"{args.container}:/root/"], check=True)  # noqa: ASYNC221
    token = in_container(
        args.container,
        f"{LIVELOG}/livelog",
        "token",
        "--env-file",
        "/etc/livelog/livelog.env",
        "--runs",
        "*",
        "--ttl",
        "3600",
    )
    cases = [(1, rate) for rate in args.latency_rates] + [(n, args.fanout_rate) for n in args.clients]
    figures = {}
    for clients, rate in cases:
        name = f"{clients} client{'s' if clients > 1 else ''} at {rate} lines/s"
        figures[name] = await run_case(args, token.strip(), api_key, clients, rate)
        f = figures[name]
        print(
            f"{name:28} delivered {f['delivered']}/{f['expected']}  p50 {f['p50_ms']} ms  p99 {f['p99_ms']} ms  "
            f"max {f['max_ms']} ms  disconnects {f['disconnects']}  connect {f['connect_s']} s "
            f"({f['connect_retries']} retried)  "
            f"RSS/conn {f['rss_per_connection_kib']} KiB  CPU (cores): Socket.IO {f['socketio_cpu_share']}, "
            f"nginx {f['nginx_cpu_share']}, clients {f['clients_cpu_share']} of {f['host_cores']}",
            flush=True,
        )
        if f["connect_failures"]:
            print(f"{'':28} connect failures: {f['connect_failures']}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--container", default="livelog-local")
    parser.add_argument("--url", default="https://127.0.0.1:8443", help="the deployment's public URL, from here")
    parser.add_argument("--latency-rates", type=lambda s: [int(x) for x in s.split(",") if x], default=[50, 500])
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",") if x], default=[1000, 5000])
    parser.add_argument("--fanout-rate", type=int, default=2, help="lines/s in the fan-out cases")
    parser.add_argument("--seconds", type=int, default=20, help="how long each run streams")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fanout.json").write_text(json.dumps({"seconds": arguments.seconds, **results}, indent=2))
