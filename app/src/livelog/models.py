"""Every shape that crosses a wire: a log line, a batch of them, a subscription, and the services' answers.

`LogLine` is the one definition of a line. It is a TypedDict, so the store, the backlog, the hub, the broadcaster
and the workflows pass plain dicts around at no cost, and pydantic validates the same type at the edges.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic validates typing.TypedDict only from Python 3.12

_RUN_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
RUN_ID_PATTERN = f"^{_RUN_ID}$"
# the run selector of a subscription: a run id, or ALL_RUNS
ALL_RUNS = "*"
RUN_SELECTOR_PATTERN = rf"^(?:\*|{_RUN_ID})$"
MAX_MESSAGE_CHARS = 8192
MAX_BATCH_LINES = 1000

RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
# the largest seq: what JavaScript holds exactly (Number.MAX_SAFE_INTEGER), well within SQLite's 64-bit integers
MAX_SEQ = 2**53 - 1


def _a_json_number(value: object) -> object:
    """JSON numbers only: pydantic's lax mode would take `true` or `"10"` for an int; 1.0 stays an integer."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a JSON number, not a string or a boolean")
    return value


# after an int's constraints (Annotated[int, Field(...), JSON_NUMBER]; before them the schema loses its bounds):
# a JSON number (1 or 1.0), never `true` or `"1"`
JSON_NUMBER = BeforeValidator(_a_json_number)
Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]
SeqMark = Annotated[int, Field(ge=0, le=MAX_SEQ), JSON_NUMBER]


class Event(StrEnum):
    """The Socket.IO events lines travel in: one line, or a list of lines of one run."""

    LINE = "log"
    BATCH = "logs"

    @classmethod
    def of(cls, batch: bool) -> Event:
        return cls.BATCH if batch else cls.LINE


def utf8_text(text: str) -> str:
    """`text` with what UTF-8 cannot encode escaped: bytes Python could not decode (a lone surrogate, as in a path
    or a process's output read with `surrogateescape`) become `\\udcff`. JSON and SQLite take UTF-8 only: a line
    they refused would be left out of the store and of the batch the broadcaster sends."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# the end of a message longer than MAX_MESSAGE_CHARS, after the cut
CUT_MARK = f" [… cut: a line keeps {MAX_MESSAGE_CHARS:,} characters at most]"
# the start of a lone surrogate's escape (`\\udcff`), at the end of a cut
_PARTIAL_ESCAPE = re.compile(r"\\(?:u(?:d(?:[89a-f][0-9a-f]?)?)?)?\Z")


def line_message(text: str) -> str:
    """`text` as a line's message: UTF-8 text (utf8_text), MAX_MESSAGE_CHARS characters at most. A longer one is cut
    and ends with CUT_MARK, so a viewer sees that it was; the cut never leaves part of an escape."""
    message = text if text.isascii() else utf8_text(text[: MAX_MESSAGE_CHARS + 1])
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return _PARTIAL_ESCAPE.sub("", message[: MAX_MESSAGE_CHARS - len(CUT_MARK)]) + CUT_MARK


@with_config(ConfigDict(extra="forbid"))
class LogLine(TypedDict):
    run_id: RunId
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ), JSON_NUMBER]  # per run, from 1
    # seconds since the epoch, when the workflow logged it; strict: a JSON number, never `true` or `"1"`, as
    # JSON_NUMBER does for the ints, but without a Python call per line (a quarter of a batch's validation)
    ts: Annotated[float, Field(allow_inf_nan=False, strict=True)]
    level: Annotated[Level, Field(default="INFO")]
    message: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class Run(TypedDict):
    run_id: str
    workflow: str
    status: RunStatus
    params: dict[str, Any]
    created: float
    finished: float | None
    error: str | None
    lines: int


class BroadcastBatch(BaseModel):
    """The body of `POST /internal/broadcast`."""

    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[LogLine], Field(min_length=1, max_length=MAX_BATCH_LINES)]


class Subscription(BaseModel):
    """The payload of the Socket.IO `subscribe` and `unsubscribe` events."""

    model_config = ConfigDict(extra="forbid")

    run_id: Annotated[str, Field(pattern=RUN_SELECTOR_PATTERN)]
    # per run: replay lines after this seq (0 = all kept). For `*`: an int for every run, a mapping per
    # run (runs it does not name are replayed whole), or nothing for live lines only.
    after_seq: SeqMark | dict[RunId, SeqMark] | None = None
    batch: bool = False


class BroadcastAccepted(BaseModel):
    accepted: int
    emitted: int


class Connections(BaseModel):
    clients: int  # Socket.IO clients connected
    subscriptions: int
    open: int  # HTTP requests and WebSockets under /socket.io/ (what LIVELOG_MAX_CONNECTIONS caps)
    refused: int  # refused at the cap, since the server started
    dropped_unread: int  # clients that left their output unread (LIVELOG_STALLED_CLIENT_SECONDS)
    refused_origins: int  # handshakes from a page whose origin is not allowed (LIVELOG_CORS_ORIGINS)
    closed_unconnected: int  # sessions closed for not connecting in time (LIVELOG_CONNECT_TIMEOUT_SECONDS)


class LineCounts(BaseModel):
    received: int
    emitted: int


class SocketIOHealth(BaseModel):
    status: Literal["healthy"]
    service: Literal["socketio"]
    port: int
    connections: Connections
    lines: LineCounts


class BroadcasterState(BaseModel):
    endpoint: str
    endpoints: list[str]
    state: Literal["ok", "failing"]
    sent: int
    queued: int
    dropped: int
    failures: int
    last_error_kind: Literal["cannot_reach", "timeout", "other"] | None
    last_error: str | None


class StoreState(BaseModel):
    written: int  # lines committed to the run store
    batches: int  # transactions that wrote them
    pending: int  # lines waiting to be written
    dropped: int  # lines left out of the store (too many waiting, or a failed write); they still went live


class ApiHealth(BaseModel):
    status: Literal["healthy", "degraded"]
    service: Literal["api"]
    port: int
    runs_active: int
    broadcaster: BroadcasterState
    store: StoreState


class RunStarted(BaseModel):
    run_id: str
    status: Literal["running"]
    logs: str


class TestLogRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: RunId | None = None
    message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)] = "livelog test line"


class TestLogSent(BaseModel):
    run_id: str
    seq: int
    endpoint: str


class ViewerTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: Annotated[list[Annotated[str, Field(pattern=RUN_SELECTOR_PATTERN)]], Field(min_length=1, max_length=100)]
    ttl_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600), JSON_NUMBER] = 3600


class ViewerToken(BaseModel):
    token: str
    expires: float
