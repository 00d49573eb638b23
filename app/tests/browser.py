"""A real browser for the viewer's tests and screenshots: Playwright driving Debian's chromium (no browser download),
and a page whose `/api/` requests reach the API as nginx sends them there (the viewer is on the Socket.IO server)."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Playwright, Route

CHROMIUM = "/usr/bin/chromium"


def launch(playwright: Playwright) -> Browser:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium package"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)


def same_origin_api(context: BrowserContext, api_url: str) -> None:
    """Send the page's `/api/...` requests to the API, as nginx's `location /api/` does: the request as the page made
    it (method, headers with the viewer token, body), to the real API, and its real answer back."""

    def forward(route: Route) -> None:
        url = urlsplit(route.request.url)
        route.fulfill(response=route.fetch(url=f"{api_url}{url.path}{'?' + url.query if url.query else ''}"))

    context.route(lambda url: urlsplit(url).path.startswith("/api/"), forward)
