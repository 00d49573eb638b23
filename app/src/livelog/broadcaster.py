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
import time
from collections import Counter, deque
from enum import StrEnum

import httpx
import orjson

from livelog.logs import TaggedLogger, Tally
from livelog.models import MAX_BATCH_LINES, BroadcasterState, LogLine, line_message

log = TaggedLogger("livelog.broadcaster", "[HTTP_BROADCASTER]")

BROADCAST_PATH = "/internal/broadcast"
JSON_BODY = {"content-type": "application/json"}
# answers that mean this batch will never be accepted: drop it (counted) rather than block the queue
REJECTED_STATUSES = frozenset({400, 413, 422})


# a batch's body stays under this (the Socket.IO server takes up to LIVELOG_MAX_BODY_BYTES, 2 MiB by default; a
# batch it refuses as too large is sent again in halves); a line's JSON without its message is about LINE_BYTES,
# and a character of its message at most 6 (a control character, escaped as \u001b)
BATCH_BYTES = 1024 * 1024
LINE_BYTES = 160


class ErrorKind(StrEnum):
    CANNOT_REACH = "cannot_reach"
    TIMEOUT = "timeout"
    OTHER = "other"


class BroadcastError(Exception):
    """A batch did not reach the Socket.IO server. The message is what the log says."""

    kind = ErrorKind.OTHER
    retry = True


class SocketIOUnreachable(BroadcastError):
    kind = ErrorKind.CANNOT_REACH

    def __init__(self, endpoint: str, cause: Exception) -> None:
        super().__init__(f"Cannot reach Socket.IO server at {endpoint}: {cause}")


class SocketIOTimeout(BroadcastError):
    kind = ErrorKind.TIMEOUT

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"Socket.IO server timeout at {endpoint}")


class BroadcastFailed(BroadcastError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"Failed to broadcast log: {detail}")


class BatchRejected(BroadcastFailed):
    """The server will never accept this batch: it is dropped (counted), not retried."""

    retry = False


class BatchTooLarge(BatchRejected):
    """The server refused the batch's size (413): its halves are sent instead, down to single lines."""


def log_endpoints(endpoints: list[str]) -> None:
    """The line operators look for first: where the broadcaster sends (never `localhost`)."""
    log.info("Socket.IO endpoint: %s", ", ".join(endpoints))


class _RateLimitedLog:
    """Logs the first failure of each kind, then at most one message per kind per interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[ErrorKind, float] = {}
        self._suppressed: dict[ErrorKind, int] = {}

    def warning(self, error: BroadcastError) -> None:
        now = time.monotonic()
        last = self._last.get(error.kind)
        if last is not None and now - last < self.interval:
            self._suppressed[error.kind] = self._suppressed.get(error.kind, 0) + 1
            return
        message = str(error)
        if suppressed := self._suppressed.pop(error.kind, 0):
            message = f"{message} ({suppressed} similar messages suppressed)"
        self._last[error.kind] = now
        log.warning(message)

    def reset(self) -> None:
        for kind, suppressed in self._suppressed.items():
            log.warning(
                "%d more failure(s) of kind %s while it failed (their messages were suppressed)", suppressed, kind
            )
        self._last.clear()
        self._suppressed.clear()


class HttpBroadcaster:
    def __init__(
        self,
        endpoints: str | list[str],
        *,
        token: str | None = None,
        queue_size: int = 10_000,
        batch_max: int = MAX_BATCH_LINES,
        timeout: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        log_interval: float = 10.0,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self._current = 0
        self._token = token
        self._queue: deque[LogLine] = deque()
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._timeout = timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._errors = _RateLimitedLog(log_interval)
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._inflight: list[LogLine] = []
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.failures_by_kind: Counter[ErrorKind] = Counter()
        self._queue_drops = Tally(log_interval)
        self.failing = False
        self.last_failure: BroadcastError | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    async def start(self) -> None:
        log_endpoints(self.endpoints)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._client = httpx.AsyncClient(timeout=self._timeout, headers=headers)
        self._task = asyncio.create_task(self._run(), name="http-broadcaster")

    def broadcast(self, line: LogLine) -> None:
        """Queue one line for the Socket.IO server. Never blocks, never raises."""
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self._note_drop()
        self._queue.append(line)
        self._drained.clear()
        self._wakeup.set()

    def _note_drop(self) -> None:
        self.dropped += 1
        self._log_queue_drops(self._queue_drops.add())

    def _log_queue_drops(self, since: int) -> None:
        if since:
            log.warning(
                "Queue full (%d lines, LIVELOG_QUEUE_SIZE): dropped the oldest %d line(s) since the last such message, "
                "%d in all; they are in the API's store, where viewers following the delivery rule fetch them",
                self._queue_size,
                since,
                self.dropped,
            )

    @property
    def queued(self) -> int:
        """Lines waiting, and lines in the request under way."""
        return len(self._queue) + len(self._inflight)

    @property
    def waiting(self) -> list[LogLine]:
        """The lines waiting for a request, oldest first."""
        return list(self._queue)

    @property
    def last_error_kind(self) -> ErrorKind | None:
        return self.last_failure.kind if self.last_failure else None

    @property
    def last_error(self) -> str | None:
        return str(self.last_failure) if self.last_failure else None

    def state(self) -> BroadcasterState:
        return BroadcasterState(
            endpoint=self.endpoint,
            endpoints=self.endpoints,
            state="failing" if self.failing else "ok",
            sent=self.sent,
            queued=self.queued,
            dropped=self.dropped,
            failures=self.failures,
            last_error_kind=self.last_error_kind,
            last_error=self.last_error,
        )

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Give queued lines `drain_timeout` seconds to go out, then stop."""
        if not self.failing:
            try:
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            except TimeoutError:
                pass
        self._log_queue_drops(self._queue_drops.flush())
        if self.queued:
            log.warning("Stopping with %d lines not delivered", self.queued)
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
                self._log_queue_drops(self._queue_drops.flush())  # the drops are over: the last ones too
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            self._inflight = self._take_batch()
            await self._deliver(self._inflight)
            self._inflight = []

    def _take_batch(self) -> list[LogLine]:
        """What has gathered, up to `batch_max` lines and about `BATCH_BYTES` of body: one line at a low rate,
        big batches under load."""
        batch: list[LogLine] = []
        size = 0
        while self._queue and len(batch) < self._batch_max:
            # str(): a malformed line must not stop the broadcaster
            size += LINE_BYTES + 6 * len(str(self._queue[0].get("message", "")))
            if batch and size > BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _deliver(self, batch: list[LogLine]) -> None:
        delay = self._backoff_initial
        while True:
            try:
                await self._post(batch)
            except BroadcastError as error:
                self.failures += 1
                self.failures_by_kind[error.kind] += 1
                self.last_failure = error
                self._errors.warning(error)
                if isinstance(error, BatchTooLarge):  # in order: the first half, then the second
                    await self._deliver(batch[: len(batch) // 2])
                    await self._deliver(batch[len(batch) // 2 :])
                    return
                if not error.retry:
                    self.dropped += len(batch)
                    return
                self.failing = True
                self._current = (self._current + 1) % len(self.endpoints)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            self.sent += len(batch)
            if self.failing:
                log.info("Socket.IO server at %s answers again", self.endpoint)
                self.failing = False
                self._errors.reset()
            return

    async def _post(self, batch: list[LogLine]) -> None:
        """Send one batch, or raise the BroadcastError that says why it did not arrive."""
        if self._client is None:
            raise RuntimeError("HttpBroadcaster.start() first")
        url = f"{self.endpoint}{BROADCAST_PATH}"
        body = _encode(batch)
        try:
            response = await self._client.post(url, content=body, headers=JSON_BODY)
        except httpx.TimeoutException as exc:
            raise SocketIOTimeout(self.endpoint) from exc
        except httpx.ConnectError as exc:
            raise SocketIOUnreachable(self.endpoint, exc) from exc
        except Exception as exc:  # anything else (a protocol error, a bad URL) must not end the sender
            raise BroadcastFailed(repr(exc)) from exc
        if response.is_success:
            return
        detail = f"HTTP {response.status_code} from {url}: {response.text[:200]}"
        if response.status_code == 413 and len(batch) > 1:
            raise BatchTooLarge(f"{detail} (sending its {len(batch)} lines in two halves)")
        if response.status_code in REJECTED_STATUSES:
            raise BatchRejected(f"{detail} (dropped {len(batch)} lines)")
        raise BroadcastFailed(detail)


def _encode(batch: list[LogLine]) -> bytes:
    """The body of a batch. orjson: 1,000 lines in 0.05 ms, 0.7 ms with httpx's json=. A message UTF-8 cannot encode
    (RunLogger escapes them; another caller may not) is escaped here rather than the batch lost."""
    try:
        return orjson.dumps({"lines": batch})
    except orjson.JSONEncodeError:
        escaped = [{**line, "message": line_message(str(line.get("message", "")))} for line in batch]
    try:
        return orjson.dumps({"lines": escaped})
    except orjson.JSONEncodeError as exc:  # a run id or a level: never sendable
        raise BatchRejected(f"a line cannot be sent as JSON: {exc} (dropped {len(batch)} lines)") from exc
