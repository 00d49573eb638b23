"""Edge check, run on the controller by verify.yml: what a security reviewer asks of the public edge, through nginx.

TLS: HTTP redirects to the public URL; the certificate chains to the given CA (the host's self-signed certificate,
or the ACME CA's root) for the given name; TLS 1.1 is refused (and, as a control, accepted by a local
`openssl s_server`, so the refusal is nginx's and not this client's); TLS 1.2 is accepted; HSTS; no version in Server.
Access: anonymous calls get 401 and a Socket.IO connection is refused; a key starts a run; a token scoped to one
run cannot subscribe to another or to `*`, and gets its own run's lines.
Limits: a key's concurrent runs beyond the cap get the API's 429; a burst beyond nginx's rate gets 429s, and so do
new Socket.IO sessions past theirs; the service stays healthy. The API key comes from LIVELOG_API_KEYS (the first one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import socketio

from livelog.subscriber import LogSubscriber

problems: list[str] = []
# the point of the TLS 1.1 probe is to offer what Python deprecates
warnings.filterwarnings("ignore", "ssl.TLSVersion.TLSv1_1 is deprecated", DeprecationWarning)


def expect(ok: bool, what: str) -> None:
    print(f"  {'ok ' if ok else 'BAD'} {what}")
    if not ok:
        problems.append(what)


def handshake(host: str, port: int, version: ssl.TLSVersion, cafile: str | None, name: str) -> str:
    """The negotiated protocol, or the error that ended the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT@SECLEVEL=0")  # Debian's OpenSSL would not offer TLS 1.1 otherwise
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            return str(tls.version())
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"


def tls_1_1_control() -> str:
    """This client's TLS 1.1 handshake against a local `openssl s_server` that allows TLS 1.1."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=control",
             "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )  # fmt: skip
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert, "-key", key, "-tls1_1",
             "-cipher", "DEFAULT@SECLEVEL=0", "-www"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                answer = handshake("127.0.0.1", port, ssl.TLSVersion.TLSv1_1, None, "control")
                if "Connection refused" not in answer:
                    return answer
                time.sleep(0.1)
            return answer
        finally:
            server.kill()
            server.wait()


def check_tls(args: argparse.Namespace) -> None:
    public = urlsplit(args.public_url)
    host, port, name = args.connect, public.port or 443, public.hostname or ""
    print(f"TLS at {host}:{port} as {name}")
    redirect = httpx.get(f"{args.http_url}/some/path?x=1", follow_redirects=False)
    expect(
        redirect.status_code == 301 and redirect.headers.get("location") == f"{args.public_url}/some/path?x=1",
        f"HTTP answers 301 to the public URL: {redirect.status_code} {redirect.headers.get('location')}",
    )
    verified = handshake(host, port, ssl.TLSVersion.TLSv1_2, args.ca_file, name)
    expect(verified == "TLSv1.2", f"the certificate chains to {args.ca_file} for {name} (TLS 1.2): {verified}")
    expect(handshake(host, port, ssl.TLSVersion.TLSv1_3, args.ca_file, name) == "TLSv1.3", "TLS 1.3 is accepted")
    control = tls_1_1_control()
    expect(control == "TLSv1.1", f"control: this client speaks TLS 1.1 to a server that allows it: {control}")
    refused = handshake(host, port, ssl.TLSVersion.TLSv1_1, None, name)
    expect(refused.startswith("refused"), f"nginx refuses TLS 1.1: {refused}")
    response = httpx.get(f"https://{host}:{port}/health", verify=False)  # noqa: S501  (checked above)
    expect(response.status_code == 200, f"/health over HTTPS: {response.status_code}")
    hsts = response.headers.get("strict-transport-security", "")
    expect(hsts.startswith("max-age=") and int(hsts.split("=")[1]) >= 15_552_000, f"HSTS: {hsts!r}")
    expect(response.headers.get("server") == "nginx", f"Server names no version: {response.headers.get('server')!r}")


async def check_access(base: str, key: str) -> None:
    print(f"access through {base}")
    anonymous = httpx.AsyncClient(verify=False, timeout=10)  # noqa: S501
    keyed = httpx.AsyncClient(verify=False, timeout=10, headers={"Authorization": f"Bearer {key}"})  # noqa: S501
    async with anonymous, keyed:
        for method, path in [
            ("POST", "/api/runs"),
            ("POST", "/api/test-log"),
            ("GET", "/api/runs"),
            ("GET", "/api/health"),
            ("GET", "/api/runs/any-run/logs"),
            ("GET", "/api/runs/any-run/logs.txt"),
        ]:
            status = (
                await anonymous.request(method, f"{base}{path}", json={} if method == "POST" else None)
            ).status_code
            expect(status == 401, f"anonymous {method} {path}: {status}")
        # the viewer's page and its files carry no data: anyone may load them, the data then needs a token
        page = await anonymous.get(f"{base}/")
        policy = page.headers.get("content-security-policy", "")
        expect(page.status_code == 200 and "script-src 'self'" in policy, f"the page: {page.status_code} {policy}")
        script = await anonymous.get(f"{base}/viewer/main.js")
        kind = script.headers.get("content-type", "")
        expect(script.status_code == 200 and "javascript" in kind, f"/viewer/main.js: {script.status_code} {kind}")
        client = socketio.AsyncClient(reconnection=False, ssl_verify=False)
        try:
            await client.connect(base, wait_timeout=10)
            refused = False
        except socketio.exceptions.ConnectionError:
            refused = True
        expect(refused and not client.connected, "an anonymous Socket.IO connection is refused")
        if client.connected:
            await client.disconnect()
        started = await keyed.post(f"{base}/api/runs", json={"workflow": "chatter", "lines": 3, "interval_ms": 10})
        expect(started.status_code == 202, f"a key starts a run: {started.status_code}")

        run_a, run_b = f"edge-a-{uuid.uuid4().hex[:8]}", f"edge-b-{uuid.uuid4().hex[:8]}"
        token = (await keyed.post(f"{base}/api/viewer-tokens", json={"runs": [run_a], "ttl_s": 300})).json()["token"]
        viewer = await LogSubscriber(base, run_a, token=token, verify_tls=False).connect()
        for other in (run_b, "*"):
            ack = await viewer.sio.call("subscribe", {"run_id": other}, timeout=10)
            expect(ack.get("ok") is False, f"a token for run A subscribing to {other!r}: {ack}")
        for run_id in (run_b, run_a):
            await keyed.post(f"{base}/api/test-log", json={"run_id": run_id, "message": run_id})
        async with asyncio.timeout(15):
            while not viewer.lines:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for a line of run B to arrive, were it to
        got = [(line["run_id"], line["message"]) for line in viewer.lines]
        expect(got == [(run_a, f"[TEST] {run_a}")], f"the token's holder gets run A's line only: {got}")
        await viewer.close()


async def check_limits(base: str, key: str, max_runs: int) -> None:
    print("limits")
    keyed = httpx.AsyncClient(verify=False, timeout=10, headers={"Authorization": f"Bearer {key}"})  # noqa: S501
    async with keyed:
        slow = {"workflow": "chatter", "lines": 60, "interval_ms": 1000}
        answers = []
        for _ in range(max_runs + 1):
            answers.append(await keyed.post(f"{base}/api/runs", json=slow))
            await asyncio.sleep(0.2)  # under nginx's rate: these 429s must be the API's
        codes = [answer.status_code for answer in answers]
        capped = answers[-1].status_code == 429 and "runs going" in answers[-1].json().get("detail", "")
        expect(codes.count(202) == max_runs and capped, f"the run cap answers 429 at run {max_runs + 1}: {codes}")
        await asyncio.sleep(3)  # nginx's bucket refills
        burst = await asyncio.gather(*(keyed.get(f"{base}/api/runs?limit=1") for _ in range(60)))
        counts = {code: [b.status_code for b in burst].count(code) for code in {b.status_code for b in burst}}
        expect(counts.get(429, 0) > 0 and counts.get(200, 0) > 0, f"a burst of 60 gets 429s past the rate: {counts}")
        await asyncio.sleep(5)  # the handshake bucket refills
        handshake = f"{base}/socket.io/?EIO=4&transport=polling"
        opened = await asyncio.gather(*(keyed.get(handshake) for _ in range(60)))
        counts = {code: [o.status_code for o in opened].count(code) for code in {o.status_code for o in opened}}
        expect(counts.get(429, 0) > 0 and counts.get(200, 0) > 0, f"60 new Socket.IO sessions get 429s: {counts}")
        health = await keyed.get(f"{base}/health")
        expect(health.status_code == 200 and health.json()["status"] == "healthy", "and the service stays healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public-url", required=True, help="https://name:port, as livelog_public_url")
    parser.add_argument("--http-url", required=True, help="nginx's HTTP port, e.g. http://127.0.0.1:8081")
    parser.add_argument("--connect", default="127.0.0.1", help="the address the public name stands for here")
    parser.add_argument("--ca-file", required=True, help="the CA (or self-signed certificate) the edge must chain to")
    parser.add_argument("--max-runs", type=int, default=10, help="livelog_max_runs_per_key")
    args = parser.parse_args()
    key = os.environ["LIVELOG_API_KEYS"].split(",")[0]
    port = urlsplit(args.public_url).port or 443
    check_tls(args)
    asyncio.run(check_access(f"https://{args.connect}:{port}", key))
    asyncio.run(check_limits(f"https://{args.connect}:{port}", key, args.max_runs))
    print("edge check: " + ("FAILED: " + "; ".join(problems) if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
