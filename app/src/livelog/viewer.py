"""The viewer page and the headers it is served with.

Its script and style are inline, so the Content-Security-Policy allows exactly those, by hash, and nothing else:
no other script, style, frame or form target, and connections only to this origin (`connect-src 'self'`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from fastapi.responses import HTMLResponse


def _hashes(html: str, tag: str) -> str:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'" for body in bodies)


def viewer_page() -> HTMLResponse:
    html = files("livelog").joinpath("static/viewer.html").read_text()
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hashes(html, 'script')}",
            f"style-src {_hashes(html, 'style')}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(html, headers=headers)
