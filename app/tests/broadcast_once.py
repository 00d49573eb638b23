"""Child process for the seed-bug test: one broadcaster, configured from the environment, sends one line.

Prints the name resolution of `localhost` it sees, the broadcaster's stats and its warnings, as JSON.
"""

import asyncio
import json
import logging
import socket
import sys
import time

from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings, socketio_endpoint


async def main(run_id: str) -> None:
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("livelog.broadcaster").addHandler(handler)
    logging.getLogger("livelog.broadcaster").setLevel(logging.INFO)

    broadcaster = HttpBroadcaster(socketio_endpoint(Settings()), backoff_initial=0.05, backoff_max=0.1)
    await broadcaster.start()
    broadcaster.broadcast({"run_id": run_id, "seq": 1, "ts": time.time(), "level": "INFO", "message": "hello"})
    deadline = time.monotonic() + 10
    while broadcaster.sent == 0 and broadcaster.failures < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await broadcaster.close(drain_timeout=0)
    localhost = sorted({info[4][0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)})
    print(json.dumps({"localhost": localhost, "stats": broadcaster.state().model_dump(mode="json"), "log": warnings}))


asyncio.run(main(sys.argv[1]))
