"""Reading request bodies with a size cap (the broadcast endpoint; nginx caps what reaches the API)."""

from __future__ import annotations

from fastapi import HTTPException, Request


async def read_capped_body(request: Request, cap: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `cap` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status_code=400, detail="invalid Content-Length")
        if int(declared) > cap:
            raise HTTPException(status_code=413, detail=f"body larger than {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise HTTPException(status_code=413, detail=f"body larger than {cap} bytes")
    return bytes(body)
