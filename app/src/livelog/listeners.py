"""The sockets the Socket.IO server listens on when it has a Unix socket as well as its port.

uvicorn serves either its host and port or sockets handed to it; with a Unix socket for the local nginx beside the
port (the broadcaster and other hosts' nginx dial the port), livelog binds both and hands them over. The port is
bound as uvicorn.run binds it (asyncio's way): every address the host resolves to, IPv6 ones IPv6-only.
"""

from __future__ import annotations

import socket
from pathlib import Path

from livelog.logs import TaggedLogger

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")


def tcp_listeners(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for `host`:`port`, or SystemExit naming the address and the variables."""
    listeners: list[socket.socket] = []
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            listener = socket.socket(family, kind, protocol)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise SystemExit(f"livelog: cannot listen on {host}:{port} (SOCKETIO_HOST, SOCKETIO_PORT): {exc}") from None
    return listeners


def unix_listener(path: Path) -> socket.socket:
    """A bound Unix socket at `path`, or SystemExit naming it.

    Writing a message to a Unix socket costs the kernel a fraction of what loopback TCP does (no TCP/IP stack, no
    acknowledgements), and the server writes every line to every viewer. Any local user may connect, as to the
    loopback port (uvicorn's own mode for Unix sockets).
    """
    if path.is_socket():  # left by a process that did not stop cleanly
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        path.chmod(0o666)
    except OSError as exc:
        listener.close()
        raise SystemExit(f"livelog: cannot listen on {path} (LIVELOG_SOCKETIO_SOCKET): {exc}") from None
    log.info("Listening on %s too", path)
    return listener
