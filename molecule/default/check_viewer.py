"""Viewer check, run on the controller by verify.yml: the log viewer in a real browser, through nginx.

Debian's chromium (driven by Playwright) opens the public URL with a viewer token, as an operator's link does, while
a run streams: the page, its scripts and styles load under nginx's headers and the page's Content-Security-Policy;
the run list comes from the API through nginx's `/api/`; the lines arrive over a WebSocket through nginx's upgrade;
every line of the run is shown once and in order; the page logs no error and violates no policy. The browser
trusts exactly the given certificate (its public key), nothing else. The API key comes from LIVELOG_API_KEYS (the
first one). Prints what it saw; exits 1 with the reasons when something is wrong.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import ConsoleMessage, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
LINES = 200  # the chatter run's own lines; the run logs two more (the planner's and the executor's first)
WAIT_MS = 60_000  # a bound for a failing check on a loaded machine, not a performance claim


def spki_pin(certificate: Path) -> str:
    """The certificate's public key as Chromium's --ignore-certificate-errors-spki-list wants it."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--public-url", required=True)
    parser.add_argument("--cert-file", required=True, type=Path, help="the certificate nginx presents (self-signed)")
    args = parser.parse_args()
    base = args.public_url.rstrip("/")
    key = os.environ["LIVELOG_API_KEYS"].split(",")[0].strip()
    run_id = f"viewer-check-{uuid.uuid4().hex[:8]}"

    with httpx.Client(base_url=base, verify=str(args.cert_file), headers={"Authorization": f"Bearer {key}"}) as api:
        started = api.post(
            "/api/runs", json={"run_id": run_id, "workflow": "chatter", "lines": LINES, "interval_ms": 10}
        )
        if started.status_code != 202:
            print(f"viewer: BAD: POST /api/runs: HTTP {started.status_code}: {started.text[:200]}")
            return 1
        token = api.post("/api/viewer-tokens", json={"runs": [run_id], "ttl_s": 600}).json()["token"]

        try:
            seen = watch(api, base, run_id, token, spki_pin(args.cert_file))
        except PlaywrightError as exc:  # its message has the page's address, token and all
            print(f"viewer: BAD: the browser: {str(exc).replace(token, '<token>').splitlines()[0]}")
            print("viewer: FAILED")
            return 1

    problems: list[str] = []
    if seen.transport != "websocket":
        problems.append(f"the lines came over {seen.transport!r}, not a WebSocket through nginx")
    if seen.seqs != list(range(1, seen.total + 1)):
        problems.append(f"the page has {len(seen.seqs)} lines, not 1..{seen.total} once and in order")
    if seen.listed != 1:
        problems.append("the run list (GET /api/runs through nginx) does not show the run")
    problems += [f"the page logged: {line}" for line in seen.console]
    print(
        f"viewer: {seen.total} lines of {run_id} shown in order over {seen.transport}; "
        f"first line {seen.first_line_s * 1000:.0f} ms after opening the page"
    )
    for problem in problems:
        print(f"viewer: BAD: {problem}")
    print("viewer: OK" if not problems else "viewer: FAILED")
    return 1 if problems else 0


@dataclass
class Seen:
    transport: str | None
    seqs: list[int]
    total: int
    listed: int
    first_line_s: float
    console: list[str]


def watch(api: httpx.Client, base: str, run_id: str, token: str, pin: str) -> Seen:
    """Open the run in the viewer, wait for its end and every line, and say what the page showed."""
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={pin}"]
        )
        page = browser.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda message: _keep_errors(message, console))
        page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
        opened = time.monotonic()
        page.goto(f"{base}/#run={run_id}&token={token}")
        page.wait_for_function("() => window.livelog && window.livelog.state().lines > 0")
        first_line_s = time.monotonic() - opened
        transport = page.locator("#connection").get_attribute("data-transport")
        while api.get(f"/api/runs/{run_id}").json()["status"] == "running":
            time.sleep(0.2)
        total = api.get(f"/api/runs/{run_id}").json()["lines"]
        page.wait_for_function("total => window.livelog.state().lines >= total", arg=total)
        seqs = page.evaluate("window.livelog.seqs()")
        listed = page.get_by_role("list").get_by_role("link", name=run_id).count()
        browser.close()
    return Seen(transport, seqs, total, listed, first_line_s, console)


def _keep_errors(message: ConsoleMessage, errors: list[str]) -> None:
    """Errors and warnings the page logs, Content-Security-Policy violations among them."""
    if message.type in ("error", "warning"):
        errors.append(f"{message.type}: {message.text[:300]}")


if __name__ == "__main__":
    sys.exit(main())
