"""python-engineio's server, with a WebSocket client's writer that waits for its next packet without a timer.

python-engineio gives each WebSocket client a writer task, which waits for every packet it sends with
`asyncio.wait_for(queue.get(), ping_interval + ping_timeout)`. On Python 3.11 that makes a task, a future and a timer
per packet, and with thousands of viewers the event loop's timer heap holds thousands of timers. With 5,000 viewers it
was about a third of the Socket.IO server's CPU (bench-edge: 0.31 cores against 0.20 without it; a bare event loop:
11.5 µs per wake-up against 4.0).

On a WebSocket the timeout ended a writer in two cases, and each has a signal here instead of a timer:
- The connection ends. The reader, the connection's other task, waits for each packet from the client with the same
  timeout; when it gives up or the connection ends, it queues None, which ends the writer (as it did).
- The server ends the session (a disconnect, a ping timeout, a packet_guard.py close) while the client keeps the
  connection open. python-engineio queues its close packet, if any, and nothing more, so only the writer's timeout
  closed the WebSocket. Here `close` queues None after it: the close packet goes out, then the WebSocket closes.
A WebSocket client that stops reading is dropped by websocket_protocol.py. Long-polling keeps python-engineio's own
poll: there the timeout ends a GET that nothing answers. A long-polling client takes its packets only with a GET, and
python-engineio's queue for it is unbounded: one that stops asking while it answers pings (a POST needs no GET) would
hold every line sent to it. So a packet for a long-polling client whose queue has waited unread for `unread_seconds`
(LIVELOG_STALLED_CLIENT_SECONDS, as for a WebSocket) is not queued: the session is closed, and counted in
`dropped_unread`; the client may connect again and resume by seq.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import engineio
from engineio import async_socket, exceptions

from livelog.logs import TaggedLogger, client_address

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")


class TimerlessWriterSocket(async_socket.AsyncSocket):  # type: ignore[misc]  # python-engineio ships no types
    dropped_unread = 0  # long-polling sessions closed so, in this process
    unread_since = 0.0  # monotonic: when the oldest packet in the queue of a long-polling client was queued
    client = "a client"  # its address, for the log

    async def send(self, pkt: Any) -> None:
        if not self.upgraded and not self.upgrading:  # long-polling
            if self.queue.empty():
                self.unread_since = time.monotonic()
            elif time.monotonic() - self.unread_since > self.server.unread_seconds:
                await self._drop_unread()
                return
        await super().send(pkt)

    async def _drop_unread(self) -> None:
        if self.closing or self.closed:
            return
        TimerlessWriterSocket.dropped_unread += 1
        log.warning(
            "Closed the long-polling session of %s: it left its output unread for %.0fs (it may reconnect and resume)",
            self.client,
            self.server.unread_seconds,
        )
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)

    async def poll(self) -> list[Any]:
        if not self.upgraded:
            return await super().poll()  # type: ignore[no-any-return]
        if self.closed and self.queue.empty():  # its close packet, if any, is out: nothing more comes
            return []
        try:
            packets = [await self.queue.get()]
        except asyncio.CancelledError:  # as python-engineio's poll: the writer then closes the WebSocket
            raise exceptions.QueueEmpty() from None
        self.queue.task_done()
        if packets == [None]:
            return []
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:  # the end: left for the next poll, which returns nothing
                self.queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        first = not self.closed and not self.closing
        await super().close(wait=wait, abort=abort, reason=reason)
        if first and self.upgraded:
            self.queue.put_nowait(None)  # the writer's end, after the close packet
        elif first and self.server.sockets.get(self.sid) is self:
            # long-polling: python-engineio keeps a closed session until a request or its next sweep, and answers a
            # POST to it with a KeyError (a 500); gone now, a GET or POST gets its 400 "Invalid session" (a GET got
            # a 400 before too), and what was queued for it goes with it
            del self.server.sockets[self.sid]


class TimerlessWriterServer(engineio.AsyncServer):  # type: ignore[misc]
    """Each new client's socket is a TimerlessWriterSocket. python-engineio makes its sockets in `_handle_connect`
    and offers no hook for their class; the `connect` event is the first thing it does with a new socket after
    queueing its open packet, before anything is read or written."""

    unread_seconds = 10.0  # how long a long-polling client's output may wait unread (set by the app)

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            socket = self.sockets.get(args[0])
            if type(socket) is async_socket.AsyncSocket:
                socket.__class__ = TimerlessWriterSocket
                socket.unread_since = time.monotonic()
                socket.client = client_address(args[1])  # the connect event's arguments: sid, environ
        return await super()._trigger_event(event, *args, **kwargs)
