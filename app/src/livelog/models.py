"""The wire format of a log line, shared by the API, the broadcaster and the Socket.IO server."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_RUN_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
RUN_ID_PATTERN = f"^{_RUN_ID}$"
# a run id, or `*` for every run
RUN_SELECTOR_PATTERN = rf"^(?:\*|{_RUN_ID})$"
MAX_MESSAGE_CHARS = 8192
MAX_BATCH_LINES = 1000

RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LogLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: RunId
    seq: Annotated[int, Field(ge=1)]
    ts: float
    level: Level = "INFO"
    message: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class BroadcastBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[LogLine], Field(min_length=1, max_length=MAX_BATCH_LINES)]
