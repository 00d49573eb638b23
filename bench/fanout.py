"""Latency and fan-out through a real nginx: the deployment `make deploy-local` made (a systemd container).

Each case starts a `chatter` run at a steady rate through nginx's /api/ (with the deployment's API key) while N
Socket.IO clients, on the container's loopback and through its nginx (TLS, WebSocket, a viewer token), watch it,
in several processes: the browser's socket.io-client on Node (bench/fanout_clients.mjs, the default), or
python-socketio (--client python, bench/fanout_clients.py). Reports per case: lines delivered/expected, latency
p50/p99/max (the line's timestamp, when the workflow logged it, to its arrival at a client), disconnects, the
Socket.IO server's RSS per connection and CPU while the run streamed, and its CPU as the clients all leave at once.
The first cases, one client at 50 and 500 lines/s, are the latency through nginx; then N clients at a low rate, to
the largest N asked for. Writes bench/results/fanout.json; asserts nothing. Load stays on this machine (the
container) and every case ends by itself (a bounded number of lines; the clients give up after --timeout).

    make deploy-local && python bench/fanout.py [--clients 1000,5000] [--container livelog-local]

Several Socket.IO nodes (bench/cluster.sh, on molecule's cluster scenario): --container is the host with nginx and
the API, --nodes the containers whose Socket.IO servers are restarted before each case and measured.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LIVELOG = "/opt/livelog/current/bin"
CHATTER_OWN_LINES = 2  # the planner's decision and the executor's announcement
HINT = "their error is above (`make bench-clients` installs the Node clients' packages; `--client python` needs none)"


def in_container(container: str, *command: str) -> str:
    podman = ["podman", "exec", container, *command]
    return subprocess.run(podman, check=True, capture_output=True, text=True).stdout


def cpu_seconds(stat: str, ticks: int) -> float:
    """User and system CPU time of a process, from its /proc/<pid>/stat."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def socketio_process(args: argparse.Namespace) -> tuple[int, float, float]:
    """The Socket.IO servers' RSS (bytes) and CPU time (s), summed over the nodes, and the CPU time of nginx's
    processes, from /proc."""
    rss, socketio = 0, 0.0
    for node in nodes(args):
        pid = in_container(node, "systemctl", "show", "-p", "MainPID", "--value", "livelog-socketio").strip()
        status = in_container(node, "cat", f"/proc/{pid}/status")
        rss += 1024 * next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        socketio += cpu_seconds(in_container(node, "cat", f"/proc/{pid}/stat"), clock_ticks(node))
    stats = in_container(args.container, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null || true").splitlines()
    nginx = sum(cpu_seconds(stat, clock_ticks(args.container)) for stat in stats if " (nginx) " in stat)
    return rss, socketio, nginx


def nodes(args: argparse.Namespace) -> list[str]:
    """The containers whose Socket.IO server the clients reach: --nodes, else the one --container."""
    return args.nodes or [args.container]


@functools.cache
def host_cores(container: str) -> int:
    return int(in_container(container, "nproc"))


@functools.cache
def clock_ticks(container: str) -> int:
    return int(in_container(container, "getconf", "CLK_TCK"))


# run on --container with the livelog venv's Python: nginx there, on loopback, with the deployment's API key (stdin).
# It starts, and connects, before the clients do, starts the run when told, and exits only when told: a process
# starting or ending in a container costs the shared cores a few hundred ms of CPU, which landed on the run's first
# lines (the third line's last viewer got it 50 ms later than the rest's).
START_RUN = """
import httpx, sys
key = sys.stdin.readline().strip()
api = httpx.Client(base_url=sys.argv[1], verify=False, timeout=30, headers={"Authorization": "Bearer " + key})
api.get("/health").raise_for_status()
print("ready", flush=True)
if sys.stdin.readline():
    api.post("/api/runs", content=sys.argv[2], headers={"Content-Type": "application/json"}).raise_for_status()
    print("started", flush=True)
    sys.stdin.read()
"""
# the Socket.IO port (7000) in LISTEN state (0A), from /proc: no tool needed on the host
LISTENING = "for _ in $(seq 100); do grep -q ':1B58 00000000:0000 0A' /proc/net/tcp && exit 0; sleep 0.1; done; exit 1"
WAIT_HEALTHY = """
import httpx, sys, time
for _ in range(100):
    try:
        if httpx.get(sys.argv[1] + "/health", verify=False, timeout=5).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.2)
sys.exit(sys.argv[1] + "/health did not answer 200 after a restart")
"""
# run on each node: wait until its Socket.IO server has no client left (its own /health, on the Unix socket its
# .env names)
WAIT_EMPTY = """
import httpx, sys, time
from livelog.config import load_settings
listening = load_settings("/etc/livelog/livelog.env").socketio_socket
server = httpx.Client(transport=httpx.HTTPTransport(uds=str(listening)), timeout=5)
start = time.monotonic()
while server.get("http://socketio/health").json()["connections"]["clients"]:
    if time.monotonic() - start > 120:
        sys.exit("the Socket.IO server still had clients 120 s after they all left")
    time.sleep(0.05)
"""


def in_livelog_python(args: argparse.Namespace, script: str) -> None:
    in_container(args.container, f"{LIVELOG}/python", "-c", script, args.inner_url)


async def expect(stream: asyncio.StreamReader, word: str) -> None:
    """The next line of a helper's output is `word` (it failed, else: its error went to stderr)."""
    line = (await asyncio.wait_for(stream.readline(), timeout=60)).decode().strip()
    if line != word:
        sys.exit(f"bench/fanout.py: the run's starter said {line!r}, not {word!r}")


def secrets_host(args: argparse.Namespace) -> str:
    """The container that keeps the deployment's shared secrets (the API key, the viewer token's): the first
    Socket.IO node, as the role keeps them."""
    return nodes(args)[0]


def clients_command(args: argparse.Namespace) -> list[str]:
    """python: fanout_clients.py, python-socketio on the host's livelog venv. js: fanout_clients.mjs, the browser's
    socket.io-client on this machine's Node, inside the host container's network namespace (its loopback, its
    nginx), so the crowd costs the shared cores what a browser's client costs, not python-socketio's several times
    that."""
    if args.client == "python":
        return ["podman", "exec", "-i", args.container, f"{LIVELOG}/python", "/root/fanout_clients.py"]
    pid = container_pid(args.container)
    return ["nsenter", "--target", pid, "--net", "node", str(Path(__file__).with_name("fanout_clients.mjs"))]


@functools.cache
def container_pid(container: str) -> str:
    """The host's pid of the container's init: its namespaces are that process's."""
    inspect = ["podman", "inspect", "--format", "{{.State.Pid}}", container]
    return subprocess.run(inspect, check=True, capture_output=True, text=True).stdout.strip()


async def clients_say(stdout: asyncio.StreamReader, args: argparse.Namespace, when: str) -> dict[str, Any]:
    """The clients' next line of JSON, or an exit saying they ended `when`."""
    if not (line := await stdout.readline()):
        sys.exit(f"bench/fanout.py: the {args.client} clients exited {when}: {HINT}")
    said: dict[str, Any] = json.loads(line)
    return said


async def run_case(args: argparse.Namespace, token: str, api_key: str, clients: int, rate: int) -> dict[str, object]:
    lines = rate * args.seconds
    run_id = f"fanout-{clients}-{rate}-{time.monotonic_ns()}"
    if clients > 1:  # a fresh process, so its RSS before the crowd is not what earlier cases left behind
        for node in nodes(args):
            in_container(node, "systemctl", "restart", "livelog-socketio")
            # listening, before nginx sends it anything: a node nginx sees refuse a connection is skipped for a while
            in_container(node, "sh", "-c", LISTENING)
        in_livelog_python(args, WAIT_HEALTHY)
    rss_before, _, _ = socketio_process(args)
    body = {"workflow": "chatter", "run_id": run_id, "lines": lines, "interval_ms": 1000 // rate}
    starter = await asyncio.create_subprocess_exec(
        "podman", "exec", "-i", args.container, f"{LIVELOG}/python", "-c", START_RUN, args.inner_url, json.dumps(body),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert starter.stdin is not None and starter.stdout is not None
    starter.stdin.write(api_key.encode() + b"\n")
    await expect(starter.stdout, "ready")
    watchers = await asyncio.create_subprocess_exec(
        *clients_command(args),
        "--url", args.inner_url, "--token", token, "--run-id", run_id,
        "--lines", str(lines + CHATTER_OWN_LINES), "--clients", str(clients),
        "--processes", str(min(args.processes, clients)), "--timeout", str(args.seconds + 60),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watchers.stdin is not None and watchers.stdout is not None
    ready = await clients_say(watchers.stdout, args, "before they connected")
    rss_connected, cpu_before, nginx_before = socketio_process(args)
    starter.stdin.write(b"go\n")
    await expect(starter.stdout, "started")
    summary = await asyncio.wait_for(clients_say(watchers.stdout, args, "before their summary"), args.seconds + 300)
    _, cpu_after, nginx_after = socketio_process(args)
    starter.stdin.close()
    await starter.wait()
    watchers.stdin.write(b"leave\n")  # the clients all go at once
    watchers.stdin.close()
    await watchers.wait()
    for node in nodes(args):
        in_container(node, f"{LIVELOG}/python", "-c", WAIT_EMPTY)
    _, cpu_departed, _ = socketio_process(args)
    return {
        **summary,
        "client": args.client,
        "rate_lines_per_s": rate,
        "connect_s": ready["connect_s"],
        "rss_per_connection_kib": round((rss_connected - rss_before) / 1024 / max(1, ready["ready"]), 1),
        "socketio_rss_mib": round(rss_connected / 2**20, 1),
        "socketio_cpu_share": round((cpu_after - cpu_before) / args.seconds, 2),
        # the rest of what shares the host's cores while the run streams: nginx, and the clients themselves
        "nginx_cpu_share": round((nginx_after - nginx_before) / args.seconds, 2),
        "clients_cpu_share": round(summary["clients_cpu_s"] / args.seconds, 2),
        # what the crowd leaving at once cost the server
        "departure_socketio_cpu_s": round(cpu_departed - cpu_after, 2),
        "host_cores": host_cores(args.container),
    }


async def main(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    try:
        api_key = in_container(secrets_host(args), "cat", "/etc/livelog/api-key")
    except subprocess.CalledProcessError:
        sys.exit(f"bench/fanout.py: no deployment to measure on {secrets_host(args)}: run `make deploy-local` first")
    if args.client == "python":
        clients_script = Path(__file__).with_name("fanout_clients.py")
        subprocess.run(["podman", "cp", str(clients_script), f"{args.container}:/root/"], check=True)  # noqa: ASYNC221
    token = in_container(
        secrets_host(args),
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
            f"nginx {f['nginx_cpu_share']}, clients {f['clients_cpu_share']} of {f['host_cores']}  "
            f"departure: Socket.IO CPU {f['departure_socketio_cpu_s']} s",
            flush=True,
        )
        if f["connect_failures"]:
            print(f"{'':28} connect failures: {f['connect_failures']}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--container", default="livelog-local")
    parser.add_argument("--inner-url", default="https://127.0.0.1", help="nginx's URL inside --container")
    parser.add_argument(
        "--nodes", type=lambda s: [x for x in s.split(",") if x], default=[], help="Socket.IO containers (--container)"
    )
    parser.add_argument("--results", default="fanout.json", help="file name under bench/results/")
    parser.add_argument("--latency-rates", type=lambda s: [int(x) for x in s.split(",") if x], default=[50, 500])
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",") if x], default=[1000, 5000])
    parser.add_argument("--fanout-rate", type=int, default=2, help="lines/s in the fan-out cases")
    parser.add_argument("--seconds", type=int, default=20, help="how long each run streams")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--client",
        choices=["js", "python"],
        default="js",
        help="the crowd: socket.io-client on Node (a browser's client), or python-socketio on the host",
    )
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / arguments.results).write_text(json.dumps({"seconds": arguments.seconds, **results}, indent=2))
