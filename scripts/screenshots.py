#!/usr/bin/env python3
"""The viewer's screenshots in docs/, from real services and Debian's chromium (as the browser tests drive it):
the run list with a live run, search results, a colour log. Run from the repo root: `python scripts/screenshots.py`."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "app" / "tests"))
from browser import launch, same_origin_api  # noqa: E402  (a helper of the tests, beside them)

from livelog.testing import Service, free_port, service_env, start_services  # noqa: E402

KEY, SECRET = "screenshot-key-0123", "screenshot-viewer-secret-0123456789abcdef-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = ROOT / "docs"


def services(workdir: Path) -> tuple[Service, Service]:
    settings = {"LIVELOG_API_KEYS": KEY, "LIVELOG_VIEWER_TOKEN_SECRET": SECRET, "LIVELOG_DATA_DIR": workdir / "data"}
    sio_port, api_port = free_port(), free_port()
    sio = Service("socketio", sio_port, workdir, service_env(SOCKETIO_PORT=sio_port, **settings))
    api = Service("api", api_port, workdir, service_env(REST_API_PORT=api_port, SOCKETIO_PORT=sio_port, **settings))
    start_services(sio, api)
    return sio, api


def run(api: Service, run_id: str, wait: bool, **body: object) -> None:
    started = httpx.post(f"{api.url}/api/runs", json={"run_id": run_id, **body}, headers=AUTH)
    started.raise_for_status()
    while wait and httpx.get(f"{api.url}/api/runs/{run_id}", headers=AUTH).json()["status"] == "running":
        time.sleep(0.1)


def shoot(page: Page, name: str) -> None:
    page.wait_for_timeout(400)  # the last frame drawn, the run list polled
    page.screenshot(path=DOCS / name)
    print(f"docs/{name}")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        sio, api = services(Path(workdir))
        try:
            run(api, "nightly-report", True, workflow="kudos-report", interval_ms=5)
            run(api, "load-check", True, workflow="chatter", lines=2500, interval_ms=0)
            run(api, "build-1041", True, workflow="colour-demo", lines=60, interval_ms=0)
            run(api, "build-1042", False, workflow="colour-demo", lines=400, interval_ms=120)
            token = httpx.post(f"{api.url}/api/viewer-tokens", json={"runs": ["*"]}, headers=AUTH).json()["token"]
            with sync_playwright() as playwright:
                browser = launch(playwright)
                context = browser.new_context(viewport={"width": 1280, "height": 720})
                same_origin_api(context, api.url)
                page = context.new_page()
                page.goto(f"{sio.url}/#run=build-1042&token={token}")
                page.wait_for_function("() => window.livelog && window.livelog.state().lines > 25")
                shoot(page, "viewer-runs.png")
                page.goto(f"{sio.url}/#run=load-check")
                page.wait_for_selector("#log[data-loaded=true]", state="attached")
                page.get_by_label("Search").fill("line 12")
                page.wait_for_function("() => document.getElementById('matches').textContent.startsWith('1 of')")
                shoot(page, "viewer-search.png")
                page.get_by_label("Search").fill("")
                page.goto(f"{sio.url}/#run=build-1041")
                page.wait_for_selector("#log[data-loaded=true]", state="attached")
                page.get_by_role("button", name="Relative time").click()
                page.get_by_role("button", name="Top").click()
                shoot(page, "viewer-colour.png")
                browser.close()
        finally:
            sio.stop()
            api.stop()


if __name__ == "__main__":
    main()
