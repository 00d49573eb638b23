"""The services' own log: one format to stdout (journald under systemd), and the seed's `[TAG]` prefixes.

Operators grep for `[HTTP_BROADCASTER]`, `[SOCKETIO_SERVER]`, `[EXECUTOR]`: a module logs through a TaggedLogger,
so the tag is written once, where the logger is made.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any


class TaggedLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every message starts with `tag`."""

    def __init__(self, name: str, tag: str) -> None:
        super().__init__(logging.getLogger(name), {"tag": tag})
        self.tag = tag

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{self.tag} {msg}", kwargs


class Tally:
    """Counts something that keeps happening (a refusal, a drop) and says when to log it: at the first, then at most
    once per `interval` seconds, however often it happens. `add` returns how many happened since the last time it
    said so (to put in that log line), or 0 when it is not time yet; `flush`, how many are still unsaid, once it has
    stopped happening (a queue drained, a stop); `total` counts them all."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.total = 0
        self._unlogged = 0
        self._next = 0.0

    def add(self, count: int = 1) -> int:
        self.total += count
        self._unlogged += count
        now = time.monotonic()
        if now < self._next:
            return 0
        since, self._unlogged, self._next = self._unlogged, 0, now + self.interval
        return since

    def flush(self) -> int:
        since, self._unlogged = self._unlogged, 0
        if since:
            self._next = time.monotonic() + self.interval
        return since


# uvicorn's records of each WebSocket opening, closing or being refused: ten thousand viewers would be tens of
# thousands of lines, and a crowd at the cap one line per refusal (the server logs refusals itself, rate-limited)
PER_CONNECTION = (
    '%s - "WebSocket %s" [accepted]',
    '%s - "WebSocket %s" %d',
    "connection open",
    "connection closed",
    "connection rejected (%d %s)",
    # uvicorn 0.54's websockets-sansio protocol says so after every denial response it sent (an HTTP 503)
    "ASGI callable returned without completing handshake.",
)


def client_address(environ: dict[str, Any]) -> str:
    """The address of an Engine.IO session's client, for the log: the one nginx saw (its X-Real-IP header), else the
    peer's. python-engineio's REMOTE_ADDR is always 127.0.0.1 under ASGI, and behind nginx the peer is nginx."""
    if real := environ.get("HTTP_X_REAL_IP"):
        return str(real)[:64]
    peer = environ.get("asgi.scope", {}).get("client")
    return str(peer[0]) if peer else "a client on the Unix socket"


def _not_per_connection(record: logging.LogRecord) -> bool:
    return record.msg not in PER_CONNECTION


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout)
    # one line per request would drown the workflow lines; failures are logged by the broadcaster
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_not_per_connection)
