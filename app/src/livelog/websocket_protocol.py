"""uvicorn's WebSocket protocol, plus one rule: a connection whose client stops reading is dropped.

When a client stops reading, the kernel's buffers fill, asyncio pauses writing, and every line meant for that client
piles up in python-engineio's queue; even a close cannot go out, so nothing would ever end the connection, and the
server's memory grows for as long as lines flow. Here each connection's kernel send buffer is fixed (autotuned, it
would take megabytes before anything showed), and a transport that stays paused for `stall_seconds` is aborted: its
buffers go, python-engineio sees a disconnect, and the client can come back and resume by seq. So a client is
dropped once about 320 KB of its output (this buffer and asyncio's 64 KiB) stays unread that long.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from asyncio import BaseTransport

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from livelog.logs import TaggedLogger

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

# SO_SNDBUF asked for (Linux doubles it): plenty for a log stream, even to a browser far away
SEND_BUFFER_BYTES = 128 * 1024


class StallGuardedWebSockets(WebSocketsSansIOProtocol):
    """Aborts a connection whose writes stay paused (its client reads nothing) for `stall_seconds`."""

    stall_seconds = 10.0
    dropped = 0  # connections dropped so, in this process (the Socket.IO server's /health shows it)

    _stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.stall_seconds, self._drop_stalled)

    def resume_writing(self) -> None:
        self._cancel_stall_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _drop_stalled(self) -> None:
        self._stall_timer = None
        StallGuardedWebSockets.dropped += 1
        log.warning(
            "Dropped the connection of %s: it read nothing of its output for %.0fs (it may reconnect and resume)",
            f"{self.client[0]}:{self.client[1]}" if self.client else "a client",
            self.stall_seconds,
        )
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # linger 0: a reset, so the kernel frees what it holds for the client at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def stall_guarded(seconds: float) -> type[StallGuardedWebSockets]:
    """The protocol class for uvicorn's `ws` option, dropping clients that read nothing for `seconds`."""
    return type("StallGuardedWebSockets", (StallGuardedWebSockets,), {"stall_seconds": seconds})
