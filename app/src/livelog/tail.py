"""`livelog tail RUN_ID`: follows one run like `kubectl logs -f`.

It prints what the API has stored, then live lines from the Socket.IO server, each once and in order (the
subscriber's rule fills any gap from the API), and returns when the run has ended and every line is printed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from livelog.api_client import ApiClient, ApiError, RunNotFound
from livelog.models import LogLine
from livelog.smoke import socketio_session
from livelog.subscriber import LogSubscriber

# how long the viewer token tail asks for lives: longer than any run it follows
TOKEN_TTL_S = 7 * 24 * 3600
EXIT_INCOMPLETE, EXIT_NO_RUN, EXIT_API = 1, 2, 3


@dataclass
class TailFailure(Exception):
    exit_code: int
    detail: str

    def __str__(self) -> str:
        return f"livelog tail: {self.detail}"


def format_line(line: LogLine, jsonl: bool) -> str:
    if jsonl:
        return json.dumps({key: line[key] for key in ("run_id", "seq", "ts", "level", "message")}, ensure_ascii=False)
    stamp = datetime.fromtimestamp(line["ts"], UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{stamp} {line['level']:<8} {line['message']}"


async def tail(
    run_id: str,
    api_url: str,
    socketio_url: str,
    api_key: str | None,
    tls: ssl.SSLContext | bool = True,
    jsonl: bool = False,
    patience: float = 30.0,
    poll_seconds: float = 1.0,
    out: TextIO = sys.stdout,
) -> int:
    """Print the run's lines until it has ended and all are printed; return how many; raise TailFailure."""

    def show(line: LogLine) -> None:
        print(format_line(line, jsonl), file=out, flush=True)

    api = ApiClient(api_url, api_key, verify=tls, timeout=min(patience, 10.0))
    try:
        try:
            run = await api.run(run_id)
            token = await api.viewer_token([run_id], TOKEN_TTL_S) if api_key else None
        except RunNotFound:
            raise TailFailure(EXIT_NO_RUN, f"no run {run_id}") from None
        except ApiError as exc:
            raise TailFailure(EXIT_API, str(exc)) from None
        async with socketio_session(tls) as session:
            subscriber = LogSubscriber(
                socketio_url,
                run_id,
                token=token,
                verify_tls=tls is not False,
                http_session=session,
                history=api,
                on_line=show,
            )
            await subscriber.complete(run_id, run["lines"])
            subscriber.follow()
            try:
                await _until_ended(api, subscriber, run_id, patience, poll_seconds)
            finally:
                await subscriber.close()
    finally:
        await api.aclose()
    return subscriber.last_seq()


async def _until_ended(api: ApiClient, subscriber: LogSubscriber, run_id: str, patience: float, poll: float) -> None:
    last_answer = time.monotonic()
    while True:
        await asyncio.sleep(poll)
        try:
            run = await api.run(run_id)
        except RunNotFound:
            raise TailFailure(EXIT_NO_RUN, f"run {run_id} is gone from the API (deleted by retention?)") from None
        except ApiError as exc:
            if time.monotonic() - last_answer > patience:
                raise TailFailure(EXIT_API, f"no answer from the API for {patience:.0f}s: {exc}") from None
            continue
        last_answer = time.monotonic()
        if run["status"] != "running":
            await subscriber.complete(run_id, run["lines"])
            missing = _missing(subscriber.seqs(run_id), run["lines"])
            if missing:
                raise TailFailure(EXIT_INCOMPLETE, f"run {run_id} ended ({run['status']}); {missing} could not be read")
            return


def _missing(printed: list[int], last: int) -> str:
    """The seqs of 1..last not in `printed` (increasing), as "lines 5, 9..12"; "" when none is missing."""
    ranges: list[str] = []
    expected = 1
    for seq in [*printed, last + 1]:
        if seq > expected:
            ranges.append(str(expected) if seq == expected + 1 else f"{expected}..{seq - 1}")
        expected = max(expected, seq + 1)
    return f"lines {', '.join(ranges)}" if ranges else ""
