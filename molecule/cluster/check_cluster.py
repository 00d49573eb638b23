"""Cluster check, run on the controller by verify.yml with real python-socketio clients.

Phase 1: one client on each Socket.IO node (direct) and one through nginx; a run of --lines lines must reach
every client complete, in order, once.
Phase 2: a longer run; when the client on the first node has --stop-after lines, this script writes
--ready-file and waits until that node stops answering (verify.yml stops its service). That client moves on
through nginx; every client must still end with every line exactly once, and the run must have been under way
when the node went down.

Runs are started with the API key in LIVELOG_API_KEYS (the first one), and every client connects with a viewer
token for every run minted with it; nginx is dialled over HTTPS without checking its self-signed certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

from livelog.subscriber import LogSubscriber


async def start_run(http: httpx.AsyncClient, nginx: str, lines: int, interval_ms: int) -> tuple[str, int]:
    run_id = f"cluster-{uuid.uuid4().hex[:10]}"
    body = {"workflow": "chatter", "run_id": run_id, "lines": lines, "interval_ms": interval_ms}
    response = await http.post(f"{nginx}/api/runs", json=body)
    response.raise_for_status()
    return run_id, lines + 2  # with the planner's decision and the executor's start line


async def wait_all(clients: dict[str, LogSubscriber], total: int, seconds: float) -> list[str]:
    """Wait until every client has the last line; on time-out say so (check() then shows what is missing)."""
    try:
        async with asyncio.timeout(seconds):
            while any(client.last_seq() < total for client in clients.values()):
                await asyncio.sleep(0.05)
    except TimeoutError:
        return [f"not every client had line {total} after {seconds} s"]
    return []


def check(clients: dict[str, LogSubscriber], total: int) -> list[str]:
    problems = []
    for name, client in clients.items():
        seqs = client.seqs()
        status = "ok" if seqs == list(range(1, total + 1)) else "WRONG"
        print(
            f"  {name:28} {len(seqs):4} lines, {client.connects} connect(s), last via {client.connected_url}: {status}"
        )
        if status != "ok":
            missing = sorted(set(range(1, total + 1)) - set(seqs))[:10]
            twice = sorted({seq for seq in seqs if seqs.count(seq) > 1})[:10]
            problems.append(
                f"{name}: {len(seqs)} lines, missing {missing}, twice {twice}, in order: {seqs == sorted(seqs)}"
            )
    return problems


async def node_down(http: httpx.AsyncClient, node: str) -> bool:
    try:
        await http.get(f"{node}/health", timeout=1)
    except httpx.HTTPError:
        return True
    return False


async def main(args: argparse.Namespace) -> int:
    nginx, nodes = args.nginx.rstrip("/"), [node.rstrip("/") for node in args.node]
    key = os.environ["LIVELOG_API_KEYS"].split(",")[0]
    async with httpx.AsyncClient(timeout=10, verify=False, headers={"Authorization": f"Bearer {key}"}) as http:  # noqa: S501
        token_answer = await http.post(f"{nginx}/api/viewer-tokens", json={"runs": ["*"], "ttl_s": 900})
        token_answer.raise_for_status()
        token = token_answer.json()["token"]

        def subscriber(urls: str | list[str], run_id: str) -> LogSubscriber:
            return LogSubscriber(urls, run_id, token=token, verify_tls=False)

        print(f"phase 1: {args.lines}-line run, a client on each node and one through nginx")
        run_id, total = await start_run(http, nginx, args.lines, interval_ms=5)
        clients = {f"node {node}": subscriber(node, run_id) for node in nodes}
        clients["nginx"] = subscriber(nginx, run_id)
        for client in clients.values():
            await client.connect()
        started = time.perf_counter()
        problems = await wait_all(clients, total, 60)
        print(f"  clients done {time.perf_counter() - started:.1f} s after subscribing")
        problems += check(clients, total)
        for client in clients.values():
            await client.close()

        print(f"phase 2: stop {nodes[0]} in the middle of a {args.failover_lines}-line run")
        run_id, total = await start_run(http, nginx, args.failover_lines, interval_ms=20)
        moving = subscriber([nodes[0], nginx], run_id)
        clients = {"moving (node 1, then nginx)": moving, "nginx": subscriber(nginx, run_id)}
        clients.update({f"node {node}": subscriber(node, run_id) for node in nodes[1:]})
        for client in clients.values():
            await client.connect()
        async with asyncio.timeout(60):
            while moving.last_seq() < args.stop_after:
                await asyncio.sleep(0.05)
        Path(args.ready_file).write_text("stop the node now\n")
        async with asyncio.timeout(60):
            while not await node_down(http, nodes[0]):
                await asyncio.sleep(0.1)
        at_stop = moving.last_seq()
        print(f"  node 1 stopped with the run at line {at_stop} of {total}")
        if at_stop >= total:
            problems.append("the run was over before the node stopped: nothing was shown")
        problems += await wait_all(clients, total, 120)
        problems += check(clients, total)
        if moving.connects < 2 or moving.connected_url == nodes[0]:
            problems.append("the client on the stopped node did not move")
        health = (await http.get(f"{nginx}/api/health")).json()["broadcaster"]
        print(
            f"  API broadcaster: endpoint now {health['endpoint']}, sent {health['sent']}, dropped {health['dropped']}"
        )
        for client in clients.values():
            await client.close()

    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print("cluster check: " + ("FAILED" if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nginx", required=True, help="https://<nginx host>[:port]")
    parser.add_argument("--node", action="append", required=True, help="http://<node>:7000 (twice or more)")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--failover-lines", type=int, default=600)
    parser.add_argument("--stop-after", type=int, default=50)
    parser.add_argument("--ready-file", required=True)
    sys.exit(asyncio.run(main(parser.parse_args())))
