"""The viewer page, its files and the headers they are served with.

The page is static HTML; its script (plain ES modules, with the official Socket.IO client vendored from npm by
scripts/vendor-viewer.sh) and its style are files under `/viewer/`, served from the package. So the
Content-Security-Policy allows scripts and styles from this origin only, nothing inline, no other script, style,
frame or form target, and connections only to this origin (`connect-src 'self'`). The files carry no data: every
run and line is read with the viewer token, through the API and the Socket.IO connection.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/viewer"
POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def viewer_page() -> HTMLResponse:
    html = files("livelog").joinpath("static/viewer.html").read_text()
    return HTMLResponse(html, headers=HEADERS)


def viewer_assets() -> StaticFiles:
    """The page's scripts and style, for `app.mount(ASSETS_PATH, ...)`."""
    return StaticFiles(packages=[("livelog", "static/viewer")])
