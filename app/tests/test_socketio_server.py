"""The Socket.IO server: health, the broadcast endpoint's answers to bad input, subscriptions and replay."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets
from conftest import Services, write_locked

from livelog.auth import mint_viewer_token
from livelog.models import LogLine
from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, make_lines

TOKEN = "s3cret-token"
SECRET = "a viewer token secret of 32 characters or more"
SETTINGS = {"LIVELOG_BROADCAST_TOKEN": TOKEN, "LIVELOG_MAX_BODY_BYTES": 8192, "LIVELOG_BACKLOG_SIZE": 20}


@pytest.fixture(scope="module")
def sio(module_services: Services) -> Service:
    """One server for the module: each test uses run ids of its own."""
    return module_services("socketio", **SETTINGS)


@pytest.fixture
def fresh_sio(services: Services) -> Iterator[Service]:
    """A server of its own, for a test that replays every run the server has."""
    yield services("socketio", **SETTINGS)


async def no_clients_left(sio: Service) -> None:
    """Clients of earlier tests have gone (the server learns of a disconnect a moment after the client)."""
    await eventually(lambda: sio.health()["connections"]["clients"] == 0, what="earlier clients to disconnect")


def post(sio: Service, body: object, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{sio.url}/internal/broadcast", json=body, headers=headers, timeout=5)


async def next_after_pings(ws: websockets.ClientConnection, seconds: float) -> str:
    """The server's next Engine.IO packet that is not a ping, answering pings meanwhile (TimeoutError after
    `seconds` without one)."""
    while (packet := str(await asyncio.wait_for(ws.recv(), timeout=seconds))) == "2":
        await ws.send("3")
    return packet


def publish(sio: Service, lines: list[LogLine]) -> None:
    response = post(sio, {"lines": lines})
    assert response.status_code == 200, response.text


async def test_health(sio: Service) -> None:
    await no_clients_left(sio)
    health = httpx.get(f"{sio.url}/health").json()
    assert health["status"] == "healthy"
    assert health["service"] == "socketio"
    assert health["port"] == sio.port
    assert health["connections"] == {
        "clients": 0,
        "subscriptions": 0,
        "open": 0,
        "refused": 0,
        "dropped_unread": 0,
        "refused_origins": 0,
        "closed_unconnected": 0,
    }


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
def test_broadcast_needs_the_token(sio: Service, token: str | None) -> None:
    response = post(sio, {"lines": make_lines("r1", 1, 1)}, token=token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_broadcast_with_the_token(sio: Service) -> None:
    response = post(sio, {"lines": make_lines("token-ok", 1, 3)})
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "emitted": 3}
    retry = post(sio, {"lines": make_lines("token-ok", 1, 3)}).json()
    assert retry == {"accepted": 3, "emitted": 0}, "a retry emits nothing"


def test_a_backlog_another_process_holds_locked_gets_503_at_once_and_the_lines_are_taken_after(
    services: Services,
) -> None:
    """The backlog's writes run on the event loop: a lock held elsewhere (a shell, a backup) fails a broadcast after
    a moment, for the broadcaster to send again, instead of stalling every viewer and request for SQLite's 5 s."""
    data = services.workdir / "locked-backlog"
    sio = services("socketio", LIVELOG_DATA_DIR=str(data), **SETTINGS)
    lock = write_locked(data / "backlog.sqlite3")
    started = time.monotonic()
    refused = post(sio, {"lines": make_lines("locked", 1, 3)})
    waited = time.monotonic() - started
    assert (refused.status_code, refused.headers.get("retry-after")) == (503, "5")
    assert "database is locked" in refused.json()["detail"]
    assert waited < 2.5, f"the broadcast waited {waited:.1f} s for the lock: the event loop with it"
    assert "Traceback" not in sio.output(), "an operational condition, not a bug"
    lock.execute("ROLLBACK")
    lock.close()
    assert post(sio, {"lines": make_lines("locked", 1, 3)}).json() == {"accepted": 3, "emitted": 3}, "sent again"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"lines": []}',
        b'{"lines": [{"run_id": "r1"}]}',
        b'{"lines": [{"run_id": "../etc", "seq": 1, "ts": 0, "message": "x"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 0, "ts": 0, "message": "x"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": 0, "message": "x", "level": "LOUD"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": 0, "message": "x", "extra": 1}]}',
        # a timestamp JSON cannot carry to a browser, a seq JavaScript cannot hold exactly
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": NaN, "message": "x"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": 1e309, "message": "x"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 9007199254740992, "ts": 0, "message": "x"}]}',
        # found by Schemathesis: lax coercion took `false` and "1" for a timestamp
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": false, "message": "x"}]}',
        b'{"lines": [{"run_id": "r1", "seq": 1, "ts": "1", "message": "x"}]}',
    ],
)
def test_malformed_batches_get_422(sio: Service, body: bytes) -> None:
    response = httpx.post(
        f"{sio.url}/internal/broadcast",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text and '"input"' not in response.text, "no traceback, no echo"
    assert httpx.get(f"{sio.url}/health").json()["status"] == "healthy"


def test_oversized_bodies_get_413(sio: Service) -> None:
    big = {"lines": [{**line, "message": "x" * 3000} for line in make_lines("r1", 1, 3)]}
    assert post(sio, big).status_code == 413

    def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(10):
            yield b" " * 1000

    response = httpx.post(
        f"{sio.url}/internal/broadcast", content=chunks(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 413
    assert httpx.get(f"{sio.url}/health").json()["status"] == "healthy"


async def test_late_subscriber_is_replayed_then_gets_live_lines(sio: Service) -> None:
    publish(sio, make_lines("late", 1, 10))

    whole = await LogSubscriber(sio.url, "late").connect()
    tail = await LogSubscriber(sio.url, "late", after_seq=7).connect()
    batched = await LogSubscriber(sio.url, "late", batch=True).connect()
    assert whole.acks[0]["replayed"] == 10 and tail.acks[0]["replayed"] == 3

    publish(sio, make_lines("late", 11, 12))
    await eventually(lambda: whole.seqs() == list(range(1, 13)), what="replay + live")
    await eventually(lambda: tail.seqs() == [8, 9, 10, 11, 12], what="replay after seq 7 + live")
    await eventually(lambda: batched.seqs() == list(range(1, 13)), what="batched replay + live")
    assert batched.events == 2, "one `logs` event for the replay, one for the live batch"
    for client in (whole, tail, batched):
        await client.close()


async def test_subscribing_again_replays_nothing(sio: Service) -> None:
    """Subscribing in a loop must not make the server send the backlog over and over."""
    publish(sio, make_lines("again", 1, 5))
    client = await LogSubscriber(sio.url, "again").connect()
    assert client.acks[0]["replayed"] == 5
    for _ in range(3):
        assert (await client.sio.call("subscribe", {"run_id": "again", "after_seq": 0}, timeout=5))["replayed"] == 0
    publish(sio, make_lines("again", 6, 6))
    await eventually(lambda: client.last_seq() == 6, what="the live line")
    assert client.seqs() == [1, 2, 3, 4, 5, 6]
    await client.close()


async def test_wildcard_subscription(fresh_sio: Service) -> None:
    sio = fresh_sio
    publish(sio, make_lines("a", 1, 2) + make_lines("b", 1, 2))
    live_only = await LogSubscriber(sio.url, "*", after_seq=None).connect()
    everything = await LogSubscriber(sio.url, "*", after_seq=0).connect()
    resumed = await LogSubscriber(sio.url, "*", after_seq={"a": 1, "b": 2}).connect()
    publish(sio, make_lines("c", 1, 1))

    def pairs(client: LogSubscriber) -> list[tuple[str, int]]:
        return [(line["run_id"], line["seq"]) for line in client.lines]

    await eventually(lambda: ("c", 1) in pairs(resumed) and ("c", 1) in pairs(everything) and live_only.lines)
    assert pairs(live_only) == [("c", 1)]
    assert pairs(everything) == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]
    assert pairs(resumed) == [("a", 2), ("c", 1)]
    for client in (live_only, everything, resumed):
        await client.close()


async def test_backlog_is_bounded_per_run(sio: Service) -> None:
    publish(sio, make_lines("long", 1, 50))
    client = await LogSubscriber(sio.url, "long").connect()
    await eventually(lambda: len(client.lines) == 20, what="the last 20 lines")
    assert client.seqs() == list(range(31, 51))
    assert client.acks[0]["runs"] == {"long": {"first_seq": 31, "last_seq": 50}}, "the ack says what the replay covers"
    assert client.gaps == [("long", 1, 30)], "without an API to ask, the subscriber records the gap"
    await client.close()


@pytest.mark.parametrize(
    ("event", "payload", "says"),
    [
        ("subscribe", None, "payload: Input should be a valid dictionary"),
        ("subscribe", "r1", "payload: Input should be a valid dictionary"),
        ("subscribe", {"run_id": "bad id"}, "run_id: String should match pattern"),
        ("subscribe", {"run_id": "r1", "after_seq": -1}, "after_seq: Input should be greater than or equal to 0"),
        ("subscribe", {"run_id": "r1", "x": 1}, "x: Extra inputs are not permitted"),
        # once a traceback and no ack, yet the room was joined
        ("subscribe", {"run_id": "r1", "after_seq": 2**63}, "after_seq: Input should be less than or equal to"),
        ("subscribe", {"run_id": "r1", "after_seq": 2**53}, "after_seq: Input should be less than or equal to"),
        ("subscribe", {"run_id": "r1", "after_seq": True}, "after_seq: Value error, Input should be a JSON number"),
        ("subscribe", {"run_id": "r1", "after_seq": 1.5}, "after_seq: Input should be a valid integer"),
        ("subscribe", {"run_id": "*", "after_seq": {"bad id!": 1}}, "after_seq.bad id!: String should match pattern"),
        ("subscribe", ({"run_id": "r1"}, "a second argument"), "payload: one object expected, got 2 arguments"),
        ("subscribe", {"run_id": "r1", "batch": "maybe"}, "batch: Input should be a valid boolean"),
        ("unsubscribe", {"run_id": ""}, "run_id: String should match pattern"),
        ("no-such-event", {"run_id": "r1"}, "unknown event 'no-such-event': the events are subscribe and unsubscribe"),
    ],
)
async def test_bad_subscribe_is_refused_not_fatal(sio: Service, event: str, payload: object, says: str) -> None:
    await no_clients_left(sio)
    client = await LogSubscriber(sio.url, "refused").connect()
    ack = await client.sio.call(event, payload, timeout=5)
    assert ack["ok"] is False and ack["error"].startswith(says), ack["error"]
    assert "function-before" not in ack["error"]
    assert client.sio.connected
    health = httpx.get(f"{sio.url}/health").json()
    assert health["connections"] == {
        "clients": 1,
        "subscriptions": 1,
        "open": 1,
        "refused": 0,
        "dropped_unread": 0,
        "refused_origins": 0,
        "closed_unconnected": 0,
    }
    await client.close()


# Engine.IO message packets whose Socket.IO payload is not a packet: an event with no data, an empty list, an
# object, broken JSON, no type, an unknown type, a CONNECT_ERROR from a client
NOT_SOCKETIO = ["2", "2[]", "2{}", "2[", "x", "9", "4{}"]


async def test_a_packet_that_is_not_socketio_ends_its_session_without_a_traceback(fresh_sio: Service) -> None:
    for payload in NOT_SOCKETIO:
        url = f"ws://127.0.0.1:{fresh_sio.port}/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(url) as ws:
            assert str(await ws.recv()).startswith("0{")  # Engine.IO open
            await ws.send("40")
            assert str(await ws.recv()).startswith("40{")  # Socket.IO connect, answered
            await ws.send(f"4{payload}")
            answer = await next_after_pings(ws, 10)
            assert answer == "1", f"{payload!r}: the server ends the Engine.IO session (close), not {answer!r}"
    metrics = httpx.get(f"{fresh_sio.url}/metrics").text
    assert f"livelog_packets_malformed_total {len(NOT_SOCKETIO)}.0" in metrics
    log = fresh_sio.output()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("it sent a packet that is not Socket.IO") == 1, "logged once, not once per packet"


async def test_a_session_that_does_not_connect_in_time_is_closed(services: Services) -> None:
    """python-socketio keeps an Engine.IO session that never connects, or whose connect it refused, for as long as it
    answers pings, holding a connection under the cap; it is closed after LIVELOG_CONNECT_TIMEOUT_SECONDS. One that
    connected stays."""
    sio = services(
        "socketio", LIVELOG_CONNECT_TIMEOUT_SECONDS=1, LIVELOG_VIEWER_TOKEN_SECRET=SECRET, LIVELOG_API_KEYS="a key"
    )
    url = f"ws://127.0.0.1:{sio.port}/socket.io/?EIO=4&transport=websocket"

    async def session(connect: str | None, answer: str) -> str:
        """What the server says last within 4 s after `connect` was answered with `answer`: the close, or nothing."""
        # as nginx sends it: the log names the address nginx saw
        async with websockets.connect(url, additional_headers={"X-Real-IP": "198.51.100.7"}) as ws:
            assert str(await ws.recv()).startswith("0{")  # Engine.IO open
            if connect is not None:
                await ws.send(connect)
                assert str(await ws.recv()).startswith(answer)
            try:
                return await next_after_pings(ws, 4)
            except TimeoutError:
                return "nothing"

    token = mint_viewer_token(SECRET, ["*"], 60)[0]
    silent, refused, connected = await asyncio.gather(
        session(None, ""),
        session('40{"token": "forged"}', "44{"),  # Socket.IO connect error
        session(f"40{json.dumps({'token': token})}", "40{"),
    )
    assert (silent, refused, connected) == ("1", "1", "nothing"), "Engine.IO close for the first two only"
    await eventually(lambda: sio.health()["connections"]["open"] == 0, what="the connections to be released")
    assert sio.health()["connections"]["closed_unconnected"] == 2
    assert "livelog_sessions_closed_unconnected_total 2.0" in httpx.get(f"{sio.url}/metrics").text
    assert sio.output().count("Closed the session of 198.51.100.7: it did not connect within 1 s") == 1, "logged once"


def test_viewer_page(sio: Service) -> None:
    """The page and its files: scripts and style from this origin only, the official Socket.IO client among them."""
    page = httpx.get(f"{sio.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy and "connect-src 'self';" in policy
    assert "<script>" not in page.text and "<style>" not in page.text, "nothing inline"
    assert '<script type="module" src="/viewer/main.js">' in page.text
    main = httpx.get(f"{sio.url}/viewer/main.js")
    assert main.status_code == 200 and main.headers["content-type"].startswith("text/javascript")
    assert 'from "./socket.io.esm.min.js"' in main.text
    client = httpx.get(f"{sio.url}/viewer/socket.io.esm.min.js")
    assert client.status_code == 200 and client.text.startswith("/*!\n * Socket.IO v4.")
    assert httpx.get(f"{sio.url}/viewer/viewer.css").headers["content-type"].startswith("text/css")
    assert httpx.get(f"{sio.url}/viewer/nothing.js").status_code == 404
