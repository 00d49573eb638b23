"""Which web pages may open a Socket.IO connection, and a log line naming each origin refused.

python-socketio checks the `Origin` header of every handshake against `cors_allowed_origins`; this is that check
as a callable, with the same rule (the server's own origin, else LIVELOG_CORS_ORIGINS), so an operator whose
frontend is refused reads which origin was refused and what to set, instead of a silent 400 in the browser.
"""

from __future__ import annotations

from typing import Any

from livelog.logs import TaggedLogger, Tally

log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

# where a request's decision is kept, in its WSGI-style environ
DECIDED = "livelog.origin_allowed"


class OriginPolicy:
    """`cors_allowed_origins` for python-socketio: a page's origin is allowed when it is the server's own (as the
    browser saw it, through nginx too) or one of `allowed`; a refusal is counted and logged, rate-limited."""

    def __init__(self, allowed: list[str]) -> None:
        self.allowed = list(allowed)
        self._refusals = Tally()  # logged at most every 10 s, however many there are

    @property
    def refused(self) -> int:
        return self._refusals.total

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin:  # not a web page (a CLI, a server): python-engineio checks only requests with an Origin
            return True
        # python-engineio asks twice per request (to check, then for the CORS headers): decide and count once
        if (decided := environ.get(DECIDED)) is not None:
            return bool(decided)
        allowed = origin in self.allowed or origin in _own_origins(environ)
        environ[DECIDED] = allowed
        if not allowed:
            self._note_refusal(origin)
        return allowed

    def _note_refusal(self, origin: str) -> None:
        if since := self._refusals.add():
            log.warning(
                "Refused a connection from origin %s: not this server's own origin%s; add it to LIVELOG_CORS_ORIGINS "
                "(role: livelog_cors_origins) to allow that page (%d refusal(s) since the last such message)",
                origin[:200],
                f" nor in LIVELOG_CORS_ORIGINS ({', '.join(self.allowed)})" if self.allowed else "",
                since,
            )


def _own_origins(environ: dict[str, Any]) -> list[str]:
    """The server's own origin as python-engineio computes it when no origins are configured."""
    scheme, host = environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST")
    if not scheme or not host:
        return []
    origins = [f"{scheme}://{host}"]
    if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
        forwarded_scheme = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
        origins.append(f"{forwarded_scheme}://{forwarded_host}")
    return origins
