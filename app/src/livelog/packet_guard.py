"""python-socketio's server, with a packet that is not Socket.IO answered by closing its session.

python-socketio raises on a packet it cannot decode or dispatch (`42[`, `2{}`, an unknown type), and
python-engineio logs each such error with a traceback. Any client may send them, before it has authenticated,
so one client could fill the journal with tracebacks. Here such a packet closes the client's Engine.IO session
(a close packet, and the WebSocket closes after it: engineio_writer.py), is counted, and
is logged in one line, at most every 10 s. Event handlers run as tasks of their own (python-socketio's
`async_handlers`), so what they raise is not caught here.
"""

from __future__ import annotations

from typing import Any

import socketio

from livelog.logs import TaggedLogger, Tally, client_address

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")


class PacketGuardedServer(socketio.AsyncServer):  # type: ignore[misc]  # python-socketio ships no types
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.malformed = Tally()

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, IndexError, KeyError) as exc:  # a JSONDecodeError is a ValueError
            self._binary_packet.pop(eio_sid, None)
            if since := self.malformed.add():
                log.warning(
                    "Closed the session of %s: it sent a packet that is not Socket.IO (%s: %s; %d such since "
                    "the last message)",
                    client_address(self.environ.get(eio_sid, {})),
                    type(exc).__name__,
                    str(exc)[:200],
                    since,
                )
            await self.eio.disconnect(eio_sid)
