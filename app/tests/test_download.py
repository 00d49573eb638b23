"""`GET /api/runs/{id}/logs.txt`: a run's whole log as text, streamed, terminal escapes removed, read with an API key
or a viewer token that covers the run."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from conftest import Services

from livelog.testing import Service

KEY, SECRET = "download-test-key", "download-test-viewer-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def api(module_services: Services) -> Service:
    _sio, api = module_services.pair(LIVELOG_API_KEYS=KEY, LIVELOG_VIEWER_TOKEN_SECRET=SECRET)
    return api


def finished_run(api: Service, run_id: str, body: dict[str, object]) -> list[dict[str, object]]:
    started = httpx.post(f"{api.url}/api/runs", json={"run_id": run_id, **body}, headers=AUTH)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while httpx.get(f"{api.url}/api/runs/{run_id}", headers=AUTH).json()["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running after 60 s"
        time.sleep(0.1)
    lines: list[dict[str, object]] = []
    while page := httpx.get(
        f"{api.url}/api/runs/{run_id}/logs", params={"after_seq": len(lines), "limit": 10_000}, headers=AUTH
    ).json():
        lines += page
    return lines


def viewer(api: Service, runs: list[str]) -> dict[str, str]:
    token = httpx.post(f"{api.url}/api/viewer-tokens", json={"runs": runs}, headers=AUTH).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_download_is_every_stored_line_without_escapes(api: Service) -> None:
    # 12,000 lines: more than one page of the store, so the stream is several chunks
    lines = finished_run(api, "dl-colours", {"workflow": "colour-demo", "lines": 12_000, "interval_ms": 0})
    assert len(lines) == 12_000 and any("\x1b[" in str(line["message"]) for line in lines)
    with httpx.stream("GET", f"{api.url}/api/runs/dl-colours/logs.txt", headers=viewer(api, ["dl-colours"])) as got:
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/plain; charset=utf-8"
        assert got.headers["content-disposition"] == 'attachment; filename="livelog-dl-colours.log"'
        assert "content-length" not in got.headers, "streamed, not built whole"
        text = got.read().decode()
    assert "\x1b" not in text
    expected = [
        f"{datetime.fromtimestamp(float(str(line['ts'])), UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z "
        f"{line['level']} {SGR.sub('', str(line['message']))}"
        for line in lines
    ]
    assert text.splitlines() == expected


def test_download_needs_a_credential_that_covers_the_run(api: Service) -> None:
    finished_run(api, "dl-private", {"workflow": "chatter", "lines": 3, "interval_ms": 0})
    url = f"{api.url}/api/runs/dl-private/logs.txt"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    refused = httpx.get(url, headers=viewer(api, ["dl-other"]))
    assert refused.status_code == 403 and "does not cover run dl-private" in refused.json()["detail"]
    assert httpx.get(url, headers=viewer(api, ["*"])).text.count("\n") == 5  # the decision, the action, 3 lines
    missing = httpx.get(f"{api.url}/api/runs/dl-nothing/logs.txt", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["detail"] == "no run dl-nothing"
