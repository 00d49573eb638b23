"""Two Socket.IO nodes sharing a real Redis (python-socketio's AsyncRedisManager and the Redis backlog).

The nodes listen on 127.0.0.2 and 127.0.0.3, same port, as two hosts would; the API's broadcaster is given
both (`SOCKETIO_INTERNAL_HOST=127.0.0.2,127.0.0.3`) and fails over when one is gone.
"""

from __future__ import annotations

import signal

import httpx
import pytest
from conftest import Services, scrape

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, free_port, start_services

NODES = ("127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="module")
def cluster(module_services: Services, redis_url: str) -> tuple[list[Service], Service]:
    """Shared by the module's tests; the one that stops a node comes last."""
    port = free_port()
    nodes = [
        module_services.make("socketio", port, host=host, SOCKETIO_HOST=host, LIVELOG_REDIS_URL=redis_url)
        for host in NODES
    ]
    api = module_services.make("api", SOCKETIO_PORT=port, SOCKETIO_INTERNAL_HOST=",".join(NODES))
    start_services(*nodes, api)
    return nodes, api


def test_a_node_whose_redis_is_down_refuses_lines_with_503(services: Services) -> None:
    """Not a 500 and a traceback: a clear 503 the broadcaster counts, and sends the lines again after."""
    node = services("socketio", LIVELOG_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    line = {"run_id": "r", "seq": 1, "ts": 1.0, "level": "INFO", "message": "hello"}
    response = httpx.post(f"{node.url}/internal/broadcast", json={"lines": [line]}, timeout=30)
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "Redis is unavailable; send the lines again"}


def start_chatter(api: Service, run_id: str, lines: int, interval_ms: int) -> int:
    body = {"workflow": "chatter", "run_id": run_id, "lines": lines, "interval_ms": interval_ms}
    assert httpx.post(f"{api.url}/api/runs", json=body).status_code == 202
    return lines + 2  # with the planner's decision and the executor's start line


async def test_every_client_on_every_node_gets_every_line(cluster: tuple[list[Service], Service]) -> None:
    nodes, api = cluster
    clients = [await LogSubscriber(node.url, "c-200").connect() for node in nodes]
    batched = await LogSubscriber(nodes[1].url, "c-200", batch=True).connect()
    before = [scrape(node) for node in nodes]

    total = start_chatter(api, "c-200", lines=200, interval_ms=2)

    for client in [*clients, batched]:
        await eventually(lambda client=client: len(client.lines) >= total, what="all lines on every node")
        assert client.seqs() == list(range(1, total + 1))
        assert client.duplicates == 0 and client.gaps == [], "the server sent each line once, without holes"
    # the broadcaster posts to its first node; the second has the lines through Redis, and counts them so
    received, relayed = "livelog_lines_received_total", "livelog_lines_relayed_total"
    await eventually(lambda: scrape(nodes[1])[relayed] == before[1][relayed] + total, what="lines counted as relayed")
    after = [scrape(node) for node in nodes]
    assert after[0][received] == before[0][received] + total and after[0][relayed] == before[0][relayed]
    assert after[1][received] == before[1][received]
    lag_count = "livelog_emit_lag_seconds_count"
    assert after[1][lag_count] > before[1][lag_count], "the relayed lines' lag is observed where they are emitted"
    late = await LogSubscriber(nodes[1].url, "c-200", after_seq=150).connect()
    await eventually(lambda: len(late.lines) == total - 150, what="replay from the other node")
    assert late.seqs() == list(range(151, total + 1))
    assert late.duplicates == 0 and late.gaps == [], "the server sent each line once, without holes"
    for client in [*clients, batched, late]:
        await client.close()


async def test_a_node_stops_mid_run(cluster: tuple[list[Service], Service]) -> None:
    """Node 1 (the broadcaster's first choice) dies; its client moves to node 2 and misses nothing."""
    nodes, api = cluster
    moving = await LogSubscriber([node.url for node in nodes], "c-fail").connect()
    staying = await LogSubscriber(nodes[1].url, "c-fail").connect()
    total = start_chatter(api, "c-fail", lines=300, interval_ms=5)

    await eventually(lambda: len(moving.lines) >= 50, what="the run to be under way")
    nodes[0].stop(signal.SIGKILL)

    await eventually(lambda: len(staying.lines) >= total, seconds=30, what="every line on node 2")
    await eventually(lambda: moving.last_seq() >= total, what="the moved client to catch up")
    assert moving.connected_url == nodes[1].url and moving.connects == 2
    assert staying.seqs() == list(range(1, total + 1))
    assert staying.duplicates == 0 and staying.gaps == [], "the server sent each line once, without holes"
    assert moving.seqs() == list(range(1, total + 1)), "every line once, in order, across the move"
    assert moving.duplicates == 0 and moving.gaps == [], "the server sent each line once, without holes"
    health = httpx.get(f"{api.url}/health").json()["broadcaster"]
    assert health["endpoint"] == nodes[1].url and health["dropped"] == 0
    for client in (moving, staying):
        await client.close()
