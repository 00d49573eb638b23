"""python-engineio's server, with a WebSocket client's writer that waits for its next packet without a timer.

python-engineio gives each WebSocket client a writer task, which waits for every packet it sends with
`asyncio.wait_for(queue.get(), ping_interval + ping_timeout)`. On Python 3.11 that makes a task, a future and a timer
per packet, and with thousands of viewers the event loop's timer heap holds thousands of timers. With 5,000 viewers it
was about a third of the Socket.IO server's CPU per line (py-spy; a bare event loop: 11.5 µs per wake-up, 4.0 without
the timer).

On a WebSocket that timeout guards nothing. The reader, the connection's other task, waits for each packet from the
client with the same timeout; when it gives up or the connection ends, it queues None, which ends the writer. A client
that stops reading is dropped by websocket_protocol.py. So once a socket is on a WebSocket, its writer waits on its
queue alone. Long-polling keeps python-engineio's own poll: there the timeout ends a GET that nothing answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import engineio
from engineio import async_socket, exceptions


class TimerlessWriterSocket(async_socket.AsyncSocket):  # type: ignore[misc]  # python-engineio ships no types
    async def poll(self) -> list[Any]:
        if not self.upgraded:
            return await super().poll()  # type: ignore[no-any-return]
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


class TimerlessWriterServer(engineio.AsyncServer):  # type: ignore[misc]
    """Each new client's socket is a TimerlessWriterSocket. python-engineio makes its sockets in `_handle_connect`
    and offers no hook for their class; the `connect` event is the first thing it does with a new socket after
    queueing its open packet, before anything is read or written."""

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            socket = self.sockets.get(args[0])
            if type(socket) is async_socket.AsyncSocket:
                socket.__class__ = TimerlessWriterSocket
        return await super()._trigger_event(event, *args, **kwargs)
