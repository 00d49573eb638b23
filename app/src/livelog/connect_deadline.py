"""python-socketio's server, with the JavaScript server's `connectTimeout`: an Engine.IO session that has not
connected to the namespace within `connect_timeout` seconds of its handshake is closed.

python-socketio keeps a session whose client never connects, or whose connect it refused (no viewer token, a
forged or expired one), open for as long as the client answers pings (python-socketio issue 298). Each holds one of
the server's LIVELOG_MAX_CONNECTIONS, so anonymous clients could keep viewers out for good. The JavaScript server
closes such sessions after 45 s; so does this, counting and logging them (one line at most every 10 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from livelog.logs import TaggedLogger, Tally, client_address

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

CONNECT_TIMEOUT_S = 45.0  # the JavaScript server's default


class ConnectDeadlineServer(socketio.AsyncServer):  # type: ignore[misc]  # python-socketio ships no types
    def __init__(self, *args: Any, connect_timeout: float = CONNECT_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout
        self.closed_unconnected = Tally()
        self._closing: set[asyncio.Task[None]] = set()

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        accepted = await super()._handle_eio_connect(eio_sid, environ)
        asyncio.get_running_loop().call_later(self.connect_timeout, self._close_if_unconnected, eio_sid)
        return accepted

    def _close_if_unconnected(self, eio_sid: str) -> None:
        # `environ` has the sessions still open; the manager, those connected to the namespace
        if eio_sid not in self.environ or self.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return
        if since := self.closed_unconnected.add():
            log.info(
                "Closed the session of %s: it did not connect within %g s (no viewer token, or a refused one; "
                "%d such since the last message)",
                client_address(self.environ[eio_sid]),
                self.connect_timeout,
                since,
            )
        closing = asyncio.create_task(self.eio.disconnect(eio_sid))
        self._closing.add(closing)  # held until done: the loop keeps only a weak reference to a task
        closing.add_done_callback(self._closing.discard)
