"""A Socket.IO client that follows runs: it records every line it is sent, and after a lost connection it
connects again (to the next of its URLs, when it has several) and resubscribes from the last seq it has.

Used by the tests and the cluster check; a browser does the same (see static/viewer.html).
Nothing is filtered here: duplicates or gaps stay visible to whoever checks the lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from livelog.models import ALL_RUNS, Event, LogLine

log = logging.getLogger("livelog.subscriber")


class LogSubscriber:
    def __init__(
        self,
        urls: str | list[str],
        run_id: str,
        *,
        batch: bool = False,
        after_seq: Any = 0,
        retry_delay: float = 0.2,
        token: str | None = None,
        verify_tls: bool = True,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.run_id = run_id
        self.batch = batch
        self.first_after_seq = after_seq
        self.retry_delay = retry_delay
        self.auth = {"token": token} if token else None
        self.lines: list[LogLine] = []
        self.events = 0
        self.connects = 0
        self.connected_url: str | None = None
        self.acks: list[dict[str, Any]] = []
        self._acked = asyncio.Event()
        self._current = 0
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.sio = socketio.AsyncClient(reconnection=False, ssl_verify=verify_tls)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(Event.LINE, self._on_log)
        self.sio.on(Event.BATCH, self._on_logs)

    def last_seq(self) -> int:
        return max((line["seq"] for line in self.lines), default=0)

    def _resume_from(self) -> Any:
        """What to resubscribe from: the last seq of the run, or of each run for `*`."""
        if self.run_id != ALL_RUNS:
            return self.last_seq()
        marks: dict[str, int] = {}
        for line in self.lines:
            marks[line["run_id"]] = max(marks.get(line["run_id"], 0), line["seq"])
        return marks

    def seqs(self, run_id: str | None = None) -> list[int]:
        return [line["seq"] for line in self.lines if run_id is None or line["run_id"] == run_id]

    async def connect(self, wait_seconds: float = 10) -> LogSubscriber:
        """Connect and subscribe; raise if either fails within `wait_seconds`."""
        self.connected_url = self.urls[self._current]
        self._acked.clear()
        await self.sio.connect(self.connected_url, auth=self.auth, wait_timeout=wait_seconds)
        async with asyncio.timeout(wait_seconds):
            await self._acked.wait()
        if not self.acks[-1].get("ok"):
            raise RuntimeError(f"subscribe refused: {self.acks[-1]}")
        return self

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        await self.sio.disconnect()

    async def _on_connect(self) -> None:
        self.connects += 1
        after = self.first_after_seq if self.connects == 1 else self._resume_from()
        payload = {"run_id": self.run_id, "after_seq": after, "batch": self.batch}
        await self.sio.emit("subscribe", payload, callback=self._on_ack)

    async def _on_ack(self, ack: dict[str, Any]) -> None:
        self.acks.append(ack)
        self._acked.set()

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self._closing:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.retry_delay)
            self._current = (self._current + 1) % len(self.urls)
            try:
                await self.connect()
                log.info("reconnected to %s after seq %d", self.connected_url, self.last_seq())
                return
            except (socketio.exceptions.ConnectionError, TimeoutError, RuntimeError) as exc:
                log.info("reconnect to %s failed: %s", self.urls[self._current], exc)
                if self.sio.connected:  # connected but not subscribed: start over
                    self._closing = True
                    await self.sio.disconnect()
                    self._closing = False

    async def _on_log(self, line: LogLine) -> None:
        self.events += 1
        self.lines.append(line)

    async def _on_logs(self, lines: list[LogLine]) -> None:
        self.events += 1
        self.lines.extend(lines)
