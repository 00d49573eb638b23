"""A crowd of Socket.IO clients through nginx, run on the deployed host with the livelog venv's Python.

Opens --connections WebSockets to nginx's /socket.io/ from several processes, each connection from one of many
loopback source addresses (so nginx's per-client limits are not what stops it), completes the Socket.IO connect
with a viewer token and answers pings. When all are open it checks that one more is refused with 503 (the
server's cap), that /health still answers through nginx, and reports; then it closes them all.

    LIVELOG_VIEWER_TOKEN=... crowd.py --url https://127.0.0.1 --connections 5000 --processes 5 --expect-cap
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import sys
import time
from multiprocessing.connection import Connection

import aiohttp

PER_ADDRESS = 15  # below nginx's livelog_nginx_connections_per_client (20) and its handshake burst (20)
IN_FLIGHT = 25  # handshakes one process has going at once


def source_address(n: int) -> str:
    return f"127.0.{n // 250 + 1}.{n % 250 + 2}"


async def open_one(url: str, token: str, local: str, tls: ssl.SSLContext) -> aiohttp.ClientWebSocketResponse:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, local_addr=(local, 0)))
    try:
        ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", autoping=True, heartbeat=None)
        opened = await ws.receive_str(timeout=30)
        if not opened.startswith("0"):
            raise RuntimeError(f"no Engine.IO open packet: {opened[:80]}")
        await ws.send_str("40" + json.dumps({"token": token}))
        connected = await ws.receive_str(timeout=30)
        if not connected.startswith("40"):
            raise RuntimeError(f"Socket.IO connect refused: {connected[:120]}")
    except BaseException:
        await session.close()
        raise
    ws._livelog_session = session  # type: ignore[attr-defined]  # closed with the socket
    return ws


async def keep_alive(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Answer Engine.IO pings (`2`) with pongs (`3`) until the socket closes."""
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT and message.data == "2":
            await ws.send_str("3")


def worker(url: str, token: str, first: int, count: int, pipe: Connection) -> None:
    asyncio.run(hold(url, token, first, count, pipe))


async def hold(url: str, token: str, first: int, count: int, pipe: Connection) -> None:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # nginx on loopback, its own certificate
    gate = asyncio.Semaphore(IN_FLIGHT)
    errors: dict[str, int] = {}
    pings: list[asyncio.Task[None]] = []

    async def one(n: int) -> aiohttp.ClientWebSocketResponse | None:
        async with gate:
            try:
                ws = await open_one(url, token, source_address(n // PER_ADDRESS), tls)
            except Exception as exc:  # counted by kind and reported, not raised
                kind = f"{type(exc).__name__}: {str(exc)[:80]}"
                errors[kind] = errors.get(kind, 0) + 1
                return None
        # answered from now: opening them all took 44 s on a slow machine, and a socket whose pong waited for the
        # last one to open missed the server's ping timeout (25 s + 20 s) and was closed
        pings.append(asyncio.create_task(keep_alive(ws)))
        return ws

    sockets = [ws for ws in await asyncio.gather(*(one(n) for n in range(first, first + count))) if ws]
    pipe.send({"open": sum(not ws.closed for ws in sockets), "errors": errors})
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to close
    still_open = sum(not ws.closed for ws in sockets)
    for ws in sockets:
        await ws.close()
        await ws._livelog_session.close()  # type: ignore[attr-defined]
    for task in pings:
        task.cancel()
    pipe.send({"still_open": still_open})


async def one_more(url: str, token: str) -> str:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    try:
        ws = await open_one(url, token, "127.0.0.1", tls)
    except aiohttp.WSServerHandshakeError as exc:
        return f"refused with HTTP {exc.status}"
    await ws.close()
    await ws._livelog_session.close()  # type: ignore[attr-defined]
    return "accepted"


async def health(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with http.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=10)) as response:
            body: dict[str, object] = await response.json()
            return {**body, "http_status": response.status}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="https://127.0.0.1")
    parser.add_argument(
        "--token", default=os.environ.get("LIVELOG_VIEWER_TOKEN"), help="default: $LIVELOG_VIEWER_TOKEN"
    )
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--expect-cap", action="store_true", help="one more connection must get 503")
    args = parser.parse_args()

    started = time.monotonic()
    share = -(-args.connections // args.processes)
    pipes, processes = [], []
    for p in range(args.processes):
        first, count = p * share, min(share, args.connections - p * share)
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=worker, args=(args.url, args.token, first, count, theirs))
        process.start()
        pipes.append(ours)
        processes.append(process)
    reports = [pipe.recv() for pipe in pipes]
    opened = sum(report["open"] for report in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for kind, n in report["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    print(f"crowd: {opened} of {args.connections} WebSockets open through nginx in {time.monotonic() - started:.1f}s")
    if errors:
        print(f"crowd: failures: {errors}")
    extra = asyncio.run(one_more(args.url, args.token)) if args.expect_cap else "not tried"
    print(f"crowd: one more connection: {extra}")
    at_cap = asyncio.run(health(args.url))
    print(f"crowd: /health at the cap: HTTP {at_cap['http_status']}, connections {at_cap.get('connections')}")
    time.sleep(5)  # held a little longer: the Engine.IO pings keep flowing, nothing drops
    for pipe in pipes:
        pipe.send("close")
    still_open = sum(pipe.recv()["still_open"] for pipe in pipes)
    print(f"crowd: {still_open} still open after 5 s more; closing all")
    for process in processes:
        process.join(timeout=60)
    ok = (
        opened == args.connections
        and still_open == opened
        and at_cap["http_status"] == 200
        and (not args.expect_cap or extra == "refused with HTTP 503")
    )
    print(f"crowd: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
