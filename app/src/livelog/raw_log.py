"""A run's raw log, as a download: one text line per log line, read from the store page by page, escapes removed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from livelog.ansi import strip_ansi
from livelog.models import LogLine
from livelog.store import RunStore

PAGE_LINES = 5000


def raw_line(line: LogLine) -> str:
    """`2026-01-02T03:04:05.678Z INFO message`: the time in UTC to the millisecond, the level, the plain message."""
    when = datetime.fromtimestamp(line["ts"], UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{when} {line['level']} {strip_ansi(line['message'])}\n"


async def raw_log(store: RunStore, run_id: str) -> AsyncIterator[str]:
    """Every line of the run written when each page is read, in order, a page at a time (a long run is never held
    whole in memory). The caller has waited for the lines logged before the request (`RunStore.get_run` does): a
    page does not wait, as a stream cannot answer 503 once it has begun, and a run still logging while the store
    cannot write would stop it halfway."""
    after = 0
    while lines := store.written_lines(run_id, after, PAGE_LINES):
        yield "".join(raw_line(line) for line in lines)
        after = lines[-1]["seq"]
