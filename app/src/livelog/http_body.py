"""Request bodies under a size cap, for a whole app (the API, and the Socket.IO server's broadcast endpoint)."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` gets 413 before a route sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(declared, scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status_code=413, detail=f"body larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded, send)

    async def _refuse(self, declared: str, scope: Scope, receive: Receive, send: Send) -> None:
        status, detail = (
            (400, "invalid Content-Length")
            if not declared.isdigit()
            else (413, f"body larger than {self.max_bytes} bytes")
        )
        await JSONResponse(status_code=status, content={"detail": detail})(scope, receive, send)
