"""A Socket.IO client that follows runs and ends with every line of each, once and in order.

The rule (the README's delivery guarantee, for any client): a run's seqs are 1, 2, 3, ... with no holes, and the
API's store has every line. So a client keeps the last seq it applied per run and:
- applies a line whose seq is the next one; ignores one it has (a replay after a reconnect);
- on a seq beyond the next, fetches the lines in between from `GET /api/runs/{id}/logs?after_seq=` first; a seq the
  store does not have either (it dropped the line, and counted it) is recorded in `gaps`, and the lines after it apply;
- on a subscribe ack, fetches what the ack's `runs[id].last_seq` says the server had, beyond what it applied
  (lines up to it never come live);
- after a lost connection, connects again (to the next of its URLs, when it has several) and resubscribes
  with `after_seq` = the last seq it applied.
Without an API to ask (`history=None`) it applies lines as they come and records each gap in `gaps`.

Used by `livelog tail`, the tests and the cluster check; the browser viewer follows the same rule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import socketio

from livelog.api_client import ApiClient
from livelog.models import ALL_RUNS, Event, LogLine

log = logging.getLogger("livelog.subscriber")


class LogSubscriber:
    def __init__(
        self,
        urls: str | list[str],
        run_id: str,
        *,
        batch: bool = False,
        after_seq: int | dict[str, int] | None = 0,
        retry_delay: float = 0.2,
        token: str | None = None,
        verify_tls: bool = True,
        http_session: aiohttp.ClientSession | None = None,
        history: ApiClient | None = None,
        on_line: Callable[[LogLine], None] | None = None,
        origin: str | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.run_id = run_id
        self.batch = batch
        self.first_after_seq = after_seq
        self.retry_delay = retry_delay
        self.auth = {"token": token} if token else None
        self.history = history
        self.on_line = on_line
        # the Origin a browser sends: the page's, when it is served from elsewhere than the Socket.IO server
        self.headers = {"Origin": origin} if origin else {}
        # applied lines, in the order applied; the last seq applied per run
        self.lines: list[LogLine] = []
        self.applied: dict[str, int] = {}
        self.events = 0
        self.duplicates = 0
        self.filled = 0
        self.gaps: list[tuple[str, int, int]] = []
        self.connects = 0
        self.connected_url: str | None = None
        self.acks: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._acked = asyncio.Event()
        self._current = 0
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.sio = socketio.AsyncClient(reconnection=False, ssl_verify=verify_tls, http_session=http_session)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(Event.LINE, self._on_log)
        self.sio.on(Event.BATCH, self._on_logs)

    def last_seq(self, run_id: str | None = None) -> int:
        """The last seq applied of `run_id` (default: the run followed)."""
        return self.applied.get(run_id or self.run_id, 0)

    def seqs(self, run_id: str | None = None) -> list[int]:
        return [line["seq"] for line in self.lines if run_id is None or line["run_id"] == run_id]

    async def connect(self, wait_seconds: float = 10) -> LogSubscriber:
        """Connect and subscribe; raise if either fails within `wait_seconds`."""
        self.connected_url = self.urls[self._current]
        self._acked.clear()
        await self.sio.connect(self.connected_url, headers=self.headers, auth=self.auth, wait_timeout=wait_seconds)
        async with asyncio.timeout(wait_seconds):
            await self._acked.wait()
        if not self.acks[-1].get("ok"):
            raise RuntimeError(f"subscribe refused: {self.acks[-1]}")
        return self

    def follow(self) -> None:
        """Connect in the background, retrying until it works (for a server that may not be up yet)."""
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(first=True))

    async def complete(self, run_id: str, last_seq: int) -> None:
        """Apply every line of the run up to `last_seq` (the run has ended with it), from the API if need be."""
        async with self._lock:
            await self._fill(run_id, last_seq)

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        await self.sio.disconnect()

    def _resume_from(self) -> int | dict[str, int] | None:
        """What to subscribe from: the last seq applied of the run, or of each run for `*`."""
        if self.run_id != ALL_RUNS:
            return self.applied.get(self.run_id, self._base(self.run_id))
        if not self.applied:
            return self.first_after_seq
        return dict(self.applied)

    def _base(self, run_id: str) -> int | None:
        """The seq a run starts after, before any line of it is applied; None: from its first line seen."""
        after = self.first_after_seq
        return after.get(run_id, 0) if isinstance(after, dict) else after

    async def _on_connect(self) -> None:
        self.connects += 1
        payload = {"run_id": self.run_id, "after_seq": self._resume_from(), "batch": self.batch}
        await self.sio.emit("subscribe", payload, callback=self._on_ack)

    async def _on_ack(self, ack: dict[str, Any]) -> None:
        async with self._lock:
            self.acks.append(ack)
            for run_id, replay in ack.get("runs", {}).items():
                if run_id in self.applied or self._base(run_id) is not None:
                    await self._fill(run_id, replay["last_seq"])
        self._acked.set()

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self._closing:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self, first: bool = False) -> None:
        while not self._closing:
            if not first:
                await asyncio.sleep(self.retry_delay)
                self._current = (self._current + 1) % len(self.urls)
            first = False
            try:
                await self.connect()
                log.info("connected to %s after seq %s", self.connected_url, self._resume_from())
                return
            except (socketio.exceptions.ConnectionError, TimeoutError, RuntimeError) as exc:
                log.info("connecting to %s failed: %s", self.urls[self._current], exc)
                if self.sio.connected:  # connected but not subscribed: start over
                    self._closing = True
                    await self.sio.disconnect()
                    self._closing = False

    async def _on_log(self, line: LogLine) -> None:
        async with self._lock:
            self.events += 1
            await self._apply(line)

    async def _on_logs(self, lines: list[LogLine]) -> None:
        async with self._lock:
            self.events += 1
            for line in lines:
                await self._apply(line)

    async def _apply(self, line: LogLine) -> None:
        run_id, seq = line["run_id"], line["seq"]
        last = self.applied.get(run_id, self._base(run_id))
        if last is not None and seq <= last:
            self.duplicates += 1
            return
        if last is not None and seq > last + 1:
            await self._fill(run_id, seq - 1)
            if self.applied.get(run_id, 0) >= seq:
                return
        self._append(line)

    async def _fill(self, run_id: str, up_to: int) -> None:
        """Apply the lines after the last applied up to `up_to` from the API (call under `_lock`)."""
        last = self.applied.get(run_id, self._base(run_id) or 0)
        if up_to <= last:
            return
        if self.history is None:
            self.gaps.append((run_id, last + 1, up_to))
            return
        try:
            lines = await self.history.lines(run_id, last, up_to)
        except Exception as exc:  # a gap that stays is recorded, not raised into python-socketio
            log.warning("could not fetch %s lines %d..%d from the API: %s", run_id, last + 1, up_to, exc)
            self.gaps.append((run_id, last + 1, up_to))
            return
        for line in lines:  # in seq order; a seq the store does not have is a gap, and the lines after it still count
            before = self.applied.get(run_id, last)
            if line["seq"] <= before:
                continue
            if line["seq"] > before + 1:
                self.gaps.append((run_id, before + 1, line["seq"] - 1))
            self.filled += 1
            self._append(line)
        if self.applied.get(run_id, last) < up_to:
            self.gaps.append((run_id, self.applied.get(run_id, last) + 1, up_to))

    def _append(self, line: LogLine) -> None:
        self.applied[line["run_id"]] = line["seq"]
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)
