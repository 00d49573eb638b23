"""uvicorn's WebSocket protocol, plus one rule: a connection whose client stops reading is dropped.

When a client stops reading, the kernel's buffers fill, asyncio pauses writing, and every line meant for that client
piles up in python-engineio's queue; even a close cannot go out, so nothing would ever end the connection, and the
server's memory grows for as long as lines flow. Here each connection's kernel send buffer is fixed (autotuned, it
would take megabytes before anything showed), and a transport that stays paused for `stall_seconds` is aborted: its
buffers go, python-engineio sees a disconnect, and the client can come back and resume by seq. So a client is
dropped once about 320 KB of its output (this buffer and asyncio's 64 KiB) stays unread that long, and so is one
that reads, but too slowly to keep up: its writes are paused most of the time.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from asyncio import BaseTransport
from collections import deque

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from livelog.logs import TaggedLogger

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

# SO_SNDBUF asked for (Linux doubles it): plenty for a log stream, even to a browser far away
SEND_BUFFER_BYTES = 128 * 1024


class StallGuardedWebSockets(WebSocketsSansIOProtocol):
    """Aborts a connection whose writes stay paused for `stall_seconds` in all within any `2 * stall_seconds`: a
    client that reads nothing, or reads less than half of what it is sent (its backlog would only grow)."""

    stall_seconds = 10.0
    dropped = 0  # connections dropped so, in this process (the Socket.IO server's /health shows it)

    _paused_since: float | None = None
    _check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._pauses: deque[tuple[float, float]] = deque()  # (start, end) of recent pauses
        super().connection_made(transport)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused_since = self.loop.time()
        self._schedule_check()

    def resume_writing(self) -> None:
        if self._paused_since is not None:
            self._pauses.append((self._paused_since, self.loop.time()))
            self._paused_since = None
        self._cancel_check()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_check()
        super().connection_lost(exc)

    def paused_lately(self) -> float:
        """Seconds the writes were paused within the last `2 * stall_seconds`."""
        now = self.loop.time()
        start = now - 2 * self.stall_seconds
        while self._pauses and self._pauses[0][1] <= start:
            self._pauses.popleft()
        paused = sum(end - max(begin, start) for begin, end in self._pauses)
        if self._paused_since is not None:
            paused += now - max(self._paused_since, start)
        return paused

    def _schedule_check(self) -> None:
        self._cancel_check()
        wait = max(0.05, self.stall_seconds - self.paused_lately())
        self._check = self.loop.call_later(wait, self._check_stall)

    def _cancel_check(self) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _check_stall(self) -> None:
        self._check = None
        if self._paused_since is None:
            return
        if self.paused_lately() < self.stall_seconds:
            self._schedule_check()
            return
        StallGuardedWebSockets.dropped += 1
        log.warning(
            "Dropped the connection of %s: it left its output unread for %.0fs of the last %.0fs "
            "(it may reconnect and resume)",
            f"{self.client[0]}:{self.client[1]}" if self.client else "a client",
            self.stall_seconds,
            2 * self.stall_seconds,
        )
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # linger 0: a reset, so the kernel frees what it holds for the client at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def stall_guarded(seconds: float) -> type[StallGuardedWebSockets]:
    """The protocol class for uvicorn's `ws` option, dropping clients that read nothing for `seconds`."""
    return type("StallGuardedWebSockets", (StallGuardedWebSockets,), {"stall_seconds": seconds})
