"""The ceiling for throughput: a bare python-socketio server that emits pre-built batches of lines in-process.

No API, no broadcaster, no store, no backlog: a client sends `go` with a count, and the server emits that many
lines to it in `logs` batches of 200, as fast as it can. bench/throughput.py runs it as a process of its own,
like the Socket.IO server it compares with.

    python bench/emit_server.py PORT
"""

from __future__ import annotations

import sys
import time

import socketio
import uvicorn

BATCH = 200

sio = socketio.AsyncServer(async_mode="asgi")


@sio.on("go")
async def go(sid: str, count: int) -> None:
    for first in range(1, count + 1, BATCH):
        batch = [
            {"run_id": "ceiling", "seq": seq, "ts": time.time(), "level": "INFO", "message": f"[EXECUTOR] line {seq}"}
            for seq in range(first, min(first + BATCH, count + 1))
        ]
        await sio.emit("logs", batch, to=sid)


if __name__ == "__main__":
    uvicorn.run(socketio.ASGIApp(sio), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
