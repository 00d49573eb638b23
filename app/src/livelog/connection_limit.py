"""A cap on the connections under one path (the Socket.IO server's `/socket.io/`), so a crowd of clients meets a
clear 503 and not a server out of file descriptors: routes outside the path, `/health` among them, keep answering."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from livelog.logs import TaggedLogger, Tally

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")


class ConnectionLimit:
    """ASGI middleware: at most `max_open` requests and WebSockets under `path` at once; more get 503."""

    def __init__(self, app: ASGIApp, max_open: int, path: str) -> None:
        self.app = app
        self.max_open = max_open
        self.path = path
        self.open = 0
        self._refusals = Tally()  # logged at most every 10 s, however many there are

    @property
    def refused(self) -> int:
        return self._refusals.total

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(self.path):
            await self.app(scope, receive, send)
            return
        if self.open >= self.max_open:
            self._note_refusal()
            await _refuse(scope, send, f"the server holds {self.max_open} connections, its most; retry later")
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1

    def _note_refusal(self) -> None:
        if since := self._refusals.add():
            log.warning(
                "Refused %d connection(s) since the last such message: %d open, the most allowed "
                "(LIVELOG_MAX_CONNECTIONS); %d refused in all",
                since,
                self.open,
                self.refused,
            )


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"10")]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension answers 403
        await send({"type": "websocket.close", "code": 1013})
