"""Cluster check, run on the controller by verify.yml with real python-socketio clients.

Phase 1: one client on each Socket.IO node (direct) and one through nginx; a run of --lines lines must reach
every client complete, in order, once.
Phase 2: a run at ~500 lines/s followed by 10 `livelog tail --jsonl` processes (through nginx) and 10
LogSubscribers (half on the first node, moving on through nginx when it goes; half through nginx, which
fails them over). When the clients have --stop-after lines, this script writes --ready-file and waits until
that node stops answering (verify.yml stops its service for 15 s). Every client must end with every line of
the run exactly once and in order, counted against the API's store, and the run must have been under way
when the node went down: it lasts about two minutes, because on a loaded machine starting the ten tails and
connecting the clients took 35 s, and a 30-second run was over before the node stopped.

Phase 3 (with --rolling-ready-file): a long run (--rolling-lines at 5 ms a line) with subscribers through nginx
and on each node; this script writes --rolling-ready-file, verify.yml redeploys a new release one host at a time,
writes --rolling-done-file, and every subscriber must hold every line of the run up to 1,000 past the redeploy's
end once and in order, counted against the store (the run goes on: its length never races the redeploy's).

Runs are started with the API key in LIVELOG_API_KEYS (the first one), and every client connects with a viewer
token for every run minted with it; nginx is dialled over HTTPS without checking its self-signed certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

from livelog.api_client import ApiClient
from livelog.subscriber import LogSubscriber

FOLLOWERS = 10  # of each kind: tail processes and LogSubscribers
# a bound for a subscribe (connect, replay, ack: the ack waits for the lines fetched from the API, more the later
# it comes in the run) on a loaded machine, not a performance claim: beside the default scenario's 5,000-viewer
# crowd in the other molecule lane, one took more than 45 s
SUBSCRIBE_WAIT_S = 90
# phase 3 checks the lines up to this many past the redeploy's end (about 5 s of the run at 5 ms a line)
ROLLING_LINES_AFTER = 1000


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
    """Every client holds lines 1..total (of a run that may go on), each once and in order."""
    problems = []
    for name, client in clients.items():
        seqs = [seq for seq in client.seqs() if seq <= total]
        status = "ok" if seqs == list(range(1, total + 1)) and not client.duplicates and not client.gaps else "WRONG"
        print(
            f"  {name:28} {len(seqs):5} lines ({client.filled} from the API), {client.connects} connect(s), "
            f"last via {client.connected_url}: {status}"
        )
        if status != "ok":
            problems.append(
                f"{name}: {len(seqs)} lines, gaps {client.gaps[:5]}, {client.duplicates} sent twice, "
                f"in order: {seqs == sorted(seqs)}"
            )
    return problems


def check_lines(name: str, lines: list[tuple[int, str]], stored: list[tuple[int, str]]) -> list[str]:
    if lines == stored:
        return []
    missing = sorted({seq for seq, _ in stored} - {seq for seq, _ in lines})[:10]
    return [f"{name}: {len(lines)} of {len(stored)} lines, missing {missing}, in order: {lines == sorted(lines)}"]


async def start_tail(nginx: str, key: str, run_id: str, out: Path) -> asyncio.subprocess.Process:
    """`livelog tail --jsonl` through nginx, as an operator would run it, printing to `out`."""
    command = [sys.executable, "-m", "livelog", "tail", run_id, "--jsonl", "--base-url", nginx, "--no-verify-tls"]
    with out.open("w") as stdout:
        return await asyncio.create_subprocess_exec(
            *command, "--api-key", key, stdout=stdout, stderr=asyncio.subprocess.PIPE
        )


async def rolling(
    args: argparse.Namespace, http: httpx.AsyncClient, nginx: str, nodes: list[str], key: str, token: str
) -> list[str]:
    print(f"phase 3: a rolling redeploy during a {args.rolling_lines}-line run")
    run_id, total = await start_run(http, nginx, args.rolling_lines, interval_ms=5)
    history = ApiClient(nginx, key, verify=False)
    clients = {}
    for n, first in enumerate([nginx, nginx, *nodes, *nodes]):
        urls = [first] if first == nginx else [first, nginx]
        name = f"{'nginx' if first == nginx else 'node ' + first + ', then nginx'} #{n}"
        clients[name] = LogSubscriber(urls, run_id, batch=n % 2 == 0, token=token, verify_tls=False, history=history)
    for client in clients.values():
        await client.connect(wait_seconds=SUBSCRIBE_WAIT_S)
    Path(args.rolling_ready_file).write_text("redeploy now\n")
    async with asyncio.timeout(900):
        while not Path(args.rolling_done_file).exists():
            await asyncio.sleep(1)
    at_done = max(client.last_seq() for client in clients.values())
    # the run goes on well past the redeploy (its length does not depend on how long the redeploy took): the
    # clients must hold every line up to a point past the redeploy's end, once and in order
    upto = at_done + ROLLING_LINES_AFTER
    print(f"  the redeploy ended with the run at line {at_done} of {total}; checking lines 1-{upto}")
    if upto > total:
        return ["the run was over before the redeploy ended: the test proved little"]
    problems = await wait_all(clients, upto, 600)
    problems += check(clients, upto)
    stored = [(line["seq"], line["message"]) for line in await history.lines(run_id, 0, upto)]
    for name, client in clients.items():
        held = [(line["seq"], line["message"]) for line in client.lines if line["seq"] <= upto]
        problems += check_lines(name, held, stored)
    if not any(client.connects >= 2 for client in clients.values()):
        problems.append("no client was moved by the redeploy: were the nodes restarted?")
    for client in clients.values():
        await client.close()
    await history.aclose()
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
            await client.connect(wait_seconds=SUBSCRIBE_WAIT_S)
        started = time.perf_counter()
        problems = await wait_all(clients, total, 60)
        print(f"  clients done {time.perf_counter() - started:.1f} s after subscribing")
        problems += check(clients, total)
        for client in clients.values():
            await client.close()

        print(f"phase 2: stop {nodes[0]} for 15 s in the middle of a {args.failover_lines}-line run at ~500 lines/s")
        run_id, total = await start_run(http, nginx, args.failover_lines, interval_ms=2)
        outputs = [Path(args.work_dir) / f"tail-{n}.jsonl" for n in range(FOLLOWERS)]
        tails = [await start_tail(nginx, key, run_id, out) for out in outputs]
        history = ApiClient(nginx, key, verify=False)
        clients = {}
        for n in range(FOLLOWERS):
            urls = [nodes[0], nginx] if n % 2 == 0 else [nginx]
            name = f"{'node 1, then nginx' if n % 2 == 0 else 'nginx'} #{n}"
            clients[name] = LogSubscriber(urls, run_id, batch=n % 4 < 2, token=token, verify_tls=False, history=history)
        for name, client in clients.items():
            began = time.perf_counter()
            await client.connect(wait_seconds=SUBSCRIBE_WAIT_S)
            replayed = client.acks[-1].get("replayed")
            print(f"  {name}: subscribed in {time.perf_counter() - began:.1f} s, {replayed} lines replayed")
        async with asyncio.timeout(170):  # verify.yml waits 400 s for the ready file
            while any(client.last_seq() < args.stop_after for client in clients.values()):
                await asyncio.sleep(0.05)
        Path(args.ready_file).write_text("stop the node now\n")
        async with asyncio.timeout(60):
            while not await node_down(http, nodes[0]):
                await asyncio.sleep(0.1)
        down_at = time.perf_counter()
        at_stop = max(client.last_seq() for client in clients.values())
        print(f"  node 1 stopped with the run at line {at_stop} of {total}")
        if at_stop >= total:
            problems.append("the run was over before the node stopped: nothing was shown")
        async with asyncio.timeout(120):
            while await node_down(http, nodes[0]):
                await asyncio.sleep(0.1)
        print(f"  node 1 answers again after {time.perf_counter() - down_at:.1f} s")
        problems += await wait_all(clients, total, 300)
        problems += check(clients, total)
        stored = [(line["seq"], line["message"]) for line in await history.lines(run_id, 0, total)]
        if len(stored) != total:
            problems.append(f"the API's store has {len(stored)} lines of {total}")
        for name, client in clients.items():
            problems += check_lines(name, [(line["seq"], line["message"]) for line in client.lines], stored)
        for n, tail in enumerate(tails):
            _, err = await tail.communicate()
            printed = [json.loads(line) for line in outputs[n].read_text().splitlines()]
            print(f"  tail #{n}: exit {tail.returncode}, {len(printed)} lines")
            if tail.returncode != 0:
                problems.append(f"tail #{n} exited {tail.returncode}: {err.decode()[-300:]}")
            problems += check_lines(f"tail #{n}", [(line["seq"], line["message"]) for line in printed], stored)
        if not any(client.connects >= 2 and client.connected_url != nodes[0] for client in clients.values()):
            problems.append("no client on the stopped node moved")
        health = (await http.get(f"{nginx}/api/health")).json()["broadcaster"]
        print(
            f"  API broadcaster: endpoint now {health['endpoint']}, sent {health['sent']}, dropped {health['dropped']}"
        )
        for client in clients.values():
            await client.close()
        await history.aclose()

        if args.rolling_ready_file:
            problems += await rolling(args, http, nginx, nodes, key, token)

    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print("cluster check: " + ("FAILED" if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nginx", required=True, help="https://<nginx host>[:port]")
    parser.add_argument("--node", action="append", required=True, help="http://<node>:7000 (twice or more)")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--failover-lines", type=int, default=60_000)
    parser.add_argument("--stop-after", type=int, default=1000)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--work-dir", required=True, help="where the tails' output goes")
    parser.add_argument("--rolling-ready-file", help="phase 3: written when the clients follow the run")
    parser.add_argument("--rolling-done-file", help="phase 3: waited for, written when the redeploy is done")
    parser.add_argument("--rolling-lines", type=int, default=100_000)
    sys.exit(asyncio.run(main(parser.parse_args())))
