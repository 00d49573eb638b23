"""`livelog smoke`: proves a test line travels API → broadcaster → Socket.IO server → a real client.

Each hop is checked in order and a failure names it, so an operator knows where to look:
health (Socket.IO server's /health), API (/api/health and POST /api/test-log), Socket.IO connect, delivery.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
import httpx
import socketio

from livelog.api_client import ApiClient, ApiError
from livelog.models import Event, LogLine

EXIT_CODES = {"health": 2, "API": 3, "Socket.IO connect": 4, "delivery": 5}


@dataclass
class SmokeFailure(Exception):
    hop: str
    detail: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.hop]

    def __str__(self) -> str:
        return f'smoke: FAILED at hop "{self.hop}": {self.detail}'


async def _socketio_health(http: httpx.AsyncClient, socketio_url: str) -> None:
    url = f"{socketio_url}/health"
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        raise SmokeFailure("health", f"GET {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise SmokeFailure("health", f"GET {url}: HTTP {response.status_code}: {response.text[:200]}")
    try:
        health = response.json()
    except ValueError:
        health = response.text[:200]
    if not isinstance(health, dict) or health.get("status") != "healthy" or health.get("service") != "socketio":
        raise SmokeFailure("health", f"{url} answered {health!r}")


async def run_smoke(
    api_url: str,
    socketio_url: str,
    hop_timeout: float,
    api_key: str | None = None,
    verify_tls: bool = True,
    ca_file: str | None = None,
) -> str:
    """Return a one-line report of the round trip; raise SmokeFailure naming the hop that failed.

    With `api_key`, the API calls carry it, and the client connects with a viewer token minted for the test run.
    """
    api_url, socketio_url = api_url.rstrip("/"), socketio_url.rstrip("/")
    run_id = f"smoke-{uuid.uuid4().hex[:12]}"
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else verify_tls
    async with (
        httpx.AsyncClient(timeout=hop_timeout, verify=tls) as http,
        ApiClient(api_url, api_key, verify=tls, timeout=hop_timeout) as api,
        socketio_session(tls) as session,
    ):
        await _socketio_health(http, socketio_url)
        with _hop("API"):
            await api.health()
            auth = {"token": await api.viewer_token([run_id], 300)} if api_key else None

        client = socketio.AsyncClient(reconnection=False, ssl_verify=verify_tls, http_session=session)
        arrived: asyncio.Queue[tuple[float, LogLine]] = asyncio.Queue()

        async def on_log(line: LogLine) -> None:
            await arrived.put((time.perf_counter(), line))

        client.on(Event.LINE, on_log)

        try:
            await client.connect(socketio_url, auth=auth, wait_timeout=hop_timeout)
        except socketio.exceptions.ConnectionError as exc:
            raise SmokeFailure("Socket.IO connect", f"{socketio_url}/socket.io/: {exc}") from exc
        try:
            return await _round_trip(api, client, arrived, socketio_url, run_id, hop_timeout)
        finally:
            await client.disconnect()


async def _round_trip(
    api: ApiClient,
    client: socketio.AsyncClient,
    arrived: asyncio.Queue[tuple[float, LogLine]],
    socketio_url: str,
    run_id: str,
    hop_timeout: float,
) -> str:
    try:
        ack = await client.call("subscribe", {"run_id": run_id, "after_seq": 0}, timeout=hop_timeout)
    except socketio.exceptions.TimeoutError as exc:
        raise SmokeFailure("Socket.IO connect", f"no answer to subscribe within {hop_timeout}s") from exc
    if not ack.get("ok"):
        raise SmokeFailure("Socket.IO connect", f"subscribe refused: {ack}")

    sent_at = time.perf_counter()
    with _hop("API"):
        seq = await api.test_log(run_id, "smoke test")

    deadline = sent_at + hop_timeout
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            received_at, line = await asyncio.wait_for(arrived.get(), remaining)
        except TimeoutError:
            break
        if line.get("run_id") == run_id and line.get("seq") == seq:
            millis = (received_at - sent_at) * 1000
            return (
                f"smoke: OK: test line {run_id}#{seq} went API -> broadcaster -> Socket.IO -> client "
                f"via {socketio_url} in {millis:.1f} ms"
            )
    broadcaster = await _broadcaster_state(api)
    raise SmokeFailure("delivery", f"test line {run_id}#{seq} not received within {hop_timeout}s; {broadcaster}")


@contextmanager
def _hop(hop: str) -> Iterator[None]:
    """An API request that fails is a failure of `hop`, with the request named."""
    try:
        yield
    except ApiError as exc:
        raise SmokeFailure(hop, str(exc)) from exc


@asynccontextmanager
async def socketio_session(tls: ssl.SSLContext | bool) -> AsyncIterator[aiohttp.ClientSession | None]:
    """The HTTP session the Socket.IO client uses: its own (None) unless it must trust a given CA."""
    if not isinstance(tls, ssl.SSLContext):
        yield None
        return
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        yield session


async def _broadcaster_state(api: ApiClient) -> str:
    try:
        state = (await api.health())["broadcaster"]
    except (ApiError, KeyError, TypeError):
        return "the API's broadcaster state is unavailable"
    return (
        f"API broadcaster -> {state['endpoint']}: {state['state']}, last error: "
        f"{state['last_error_kind']} {state['last_error'] or ''}".rstrip()
    )
