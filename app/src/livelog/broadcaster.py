"""The HTTP broadcaster: hands every log line of the API to the Socket.IO server.

`broadcast()` is a plain function: it appends to a bounded queue and returns, so a workflow never waits
for the network and never sees its errors. One task drains the queue through one long-lived
`httpx.AsyncClient`, one request at a time (which keeps lines in order), taking whatever queued up while
the previous request was in flight: no timer adds latency at low rates, and batches grow with the rate.
A failed batch is retried with backoff until the server is back, trying the next endpoint first when
several Socket.IO nodes are configured. Failures are logged as one of three kinds, at most once per kind
per `log_interval`; what a full queue pushes out is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from enum import StrEnum
from typing import Any

import httpx

log = logging.getLogger("livelog.broadcaster")

BROADCAST_PATH = "/internal/broadcast"
# answers that mean this batch will never be accepted: drop it (counted) rather than block the queue
REJECTED_STATUSES = frozenset({400, 413, 422})


class ErrorKind(StrEnum):
    CANNOT_REACH = "cannot_reach"
    TIMEOUT = "timeout"
    OTHER = "other"


class _RateLimitedLog:
    """Logs the first failure of each kind, then at most one message per kind per interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[ErrorKind, float] = {}
        self._suppressed: dict[ErrorKind, int] = {}

    def warning(self, kind: ErrorKind, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message = f"{message} ({suppressed} similar messages suppressed)"
        self._last[kind] = now
        log.warning(message)

    def reset(self) -> None:
        self._last.clear()
        self._suppressed.clear()


class HttpBroadcaster:
    def __init__(
        self,
        endpoints: str | list[str],
        *,
        token: str | None = None,
        queue_size: int = 10_000,
        batch_max: int = 200,
        timeout: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        log_interval: float = 10.0,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self._current = 0
        self._token = token
        self._queue: deque[dict[str, Any]] = deque()
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._timeout = timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._errors = _RateLimitedLog(log_interval)
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._inflight: list[dict[str, Any]] = []
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.failing = False
        self.last_error_kind: ErrorKind | None = None
        self.last_error: str | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    async def start(self) -> None:
        log.info("[HTTP_BROADCASTER] Socket.IO endpoint: %s", ", ".join(self.endpoints))
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._client = httpx.AsyncClient(timeout=self._timeout, headers=headers)
        self._task = asyncio.create_task(self._run(), name="http-broadcaster")

    def broadcast(self, line: dict[str, Any]) -> None:
        """Queue one line for the Socket.IO server. Never blocks, never raises."""
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(line)
        self._drained.clear()
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._inflight)

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "endpoints": self.endpoints,
            "state": "failing" if self.failing else "ok",
            "sent": self.sent,
            "queued": self.queued,
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error_kind": self.last_error_kind,
            "last_error": self.last_error,
        }

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Give queued lines `drain_timeout` seconds to go out, then stop."""
        if not self.failing:
            try:
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            except TimeoutError:
                pass
        if self.queued:
            log.warning("[HTTP_BROADCASTER] Stopping with %d lines not delivered", self.queued)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            count = min(len(self._queue), self._batch_max)
            self._inflight = [self._queue.popleft() for _ in range(count)]
            await self._deliver(self._inflight)
            self._inflight = []

    async def _deliver(self, batch: list[dict[str, Any]]) -> None:
        delay = self._backoff_initial
        while True:
            kind, message, rejected = await self._post(batch)
            if kind is None:
                self.sent += len(batch)
                if self.failing:
                    log.info("[HTTP_BROADCASTER] Socket.IO server at %s answers again", self.endpoint)
                    self.failing = False
                    self._errors.reset()
                return
            self.failures += 1
            self.last_error_kind, self.last_error = kind, message
            self._errors.warning(kind, message)
            if rejected:
                self.dropped += len(batch)
                return
            self.failing = True
            self._current = (self._current + 1) % len(self.endpoints)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _post(self, batch: list[dict[str, Any]]) -> tuple[ErrorKind | None, str, bool]:
        """Send one batch; return (error kind or None, log message, whether the server rejected it)."""
        assert self._client is not None, "start() first"
        try:
            response = await self._client.post(f"{self.endpoint}{BROADCAST_PATH}", json={"lines": batch})
        except httpx.TimeoutException:
            return ErrorKind.TIMEOUT, f"[HTTP_BROADCASTER] Socket.IO server timeout at {self.endpoint}", False
        except httpx.ConnectError as exc:
            return (
                ErrorKind.CANNOT_REACH,
                f"[HTTP_BROADCASTER] Cannot reach Socket.IO server at {self.endpoint}: {exc}",
                False,
            )
        except Exception as exc:  # anything else (a protocol error, a bad URL) must not end the sender
            return ErrorKind.OTHER, f"[HTTP_BROADCASTER] Failed to broadcast log: {exc!r}", False
        if response.is_success:
            return None, "", False
        detail = f"HTTP {response.status_code} from {self.endpoint}{BROADCAST_PATH}: {response.text[:200]}"
        rejected = response.status_code in REJECTED_STATUSES
        if rejected:
            detail += f" (dropped {len(batch)} lines)"
        return ErrorKind.OTHER, f"[HTTP_BROADCASTER] Failed to broadcast log: {detail}", rejected
