"""Credentials against real servers: API keys on /api/*, viewer tokens scoped to runs on the API and Socket.IO."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
import socketio
from conftest import Services

from livelog.auth import InvalidCredentials, mint_viewer_token, verify_viewer_token
from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually, service_env

KEY, OTHER_KEY, SECRET = "key-one-0123456789", "key-two-0123456789", "viewer-secret-0123456789abcdef-0123456789"
SETTINGS = {"LIVELOG_API_KEYS": f"{KEY}, {OTHER_KEY}", "LIVELOG_VIEWER_TOKEN_SECRET": SECRET}


@pytest.fixture(scope="module")
def locked(module_services: Services) -> tuple[Service, Service]:
    return module_services.pair(**SETTINGS)


def call(api: Service, method: str, path: str, credential: str | None = None, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return httpx.request(method, f"{api.url}{path}", headers=headers, timeout=5, **kwargs)  # type: ignore[arg-type]


def viewer_token(api: Service, runs: list[str], ttl_s: int = 300) -> str:
    response = call(api, "POST", "/api/viewer-tokens", KEY, json={"runs": runs, "ttl_s": ttl_s})
    assert response.status_code == 200, response.text
    assert response.json()["expires"] > time.time()
    token: str = response.json()["token"]
    return token


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/runs", {}),
        ("POST", "/api/test-log", {}),
        ("GET", "/api/runs", None),
        ("GET", "/api/runs/any", None),
        ("GET", "/api/runs/any/logs", None),
        ("GET", "/api/health", None),
        ("POST", "/api/viewer-tokens", {"runs": ["*"]}),
    ],
)
@pytest.mark.parametrize("credential", [None, "wrong-key", KEY + "x"])
def test_anonymous_and_wrong_keys_get_401_without_detail(
    locked: tuple[Service, Service], method: str, path: str, body: object, credential: str | None
) -> None:
    _, api = locked
    response = call(api, method, path, credential, json=body)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "credentials required"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_health_stays_open(locked: tuple[Service, Service]) -> None:
    sio, api = locked
    assert httpx.get(f"{api.url}/health").status_code == 200
    assert httpx.get(f"{sio.url}/health").status_code == 200


def test_every_key_works(locked: tuple[Service, Service]) -> None:
    _, api = locked
    for key in (KEY, OTHER_KEY):
        assert call(api, "POST", "/api/runs", key, json={"workflow": "chatter", "lines": 1}).status_code == 202


def test_a_viewer_token_reads_its_runs_only_and_writes_nothing(locked: tuple[Service, Service]) -> None:
    _, api = locked
    for run_id in ("read-a", "read-b"):
        assert call(api, "POST", "/api/test-log", KEY, json={"run_id": run_id}).status_code == 200
    token = viewer_token(api, ["read-a"])
    assert call(api, "GET", "/api/runs/read-a", token).status_code == 200
    assert call(api, "GET", "/api/runs/read-a/logs", token).json()[0]["message"] == "[TEST] livelog test line"
    assert call(api, "GET", "/api/runs/read-b", token).status_code == 403
    assert call(api, "GET", "/api/runs/read-b/logs", token).status_code == 403
    assert [run["run_id"] for run in call(api, "GET", "/api/runs", token).json()] == ["read-a"]
    assert call(api, "POST", "/api/runs", token, json={}).status_code == 401, "a viewer token is not a key"
    assert call(api, "POST", "/api/viewer-tokens", token, json={"runs": ["*"]}).status_code == 401
    everything = viewer_token(api, ["*"])
    assert {"read-a", "read-b"} <= {run["run_id"] for run in call(api, "GET", "/api/runs", everything).json()}


@pytest.mark.parametrize("body", [{"runs": []}, {"runs": ["../x"]}, {"runs": ["a"], "ttl_s": 0}, {"runs": "a"}])
def test_bad_token_requests_get_422(locked: tuple[Service, Service], body: object) -> None:
    _, api = locked
    assert call(api, "POST", "/api/viewer-tokens", KEY, json=body).status_code == 422


@pytest.mark.parametrize("auth", [None, {}, {"token": "not-a-jwt"}, {"token": 7}])
async def test_socketio_refuses_a_connection_without_a_valid_token(
    locked: tuple[Service, Service], auth: dict[str, object] | None
) -> None:
    sio, _ = locked
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[object] = []
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(sio.url, auth=auth, wait_timeout=5)
    assert not client.connected
    assert reasons == [{"message": "a valid viewer token is required"}]


async def test_socketio_refuses_forged_and_expired_tokens(locked: tuple[Service, Service]) -> None:
    sio, _ = locked
    forged, _ = mint_viewer_token("another-secret-0123456789abcdef-0123456789", ["*"], 300)
    expired, _ = mint_viewer_token(SECRET, ["*"], 60, now=time.time() - 3600)
    for token in (forged, expired):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await LogSubscriber(sio.url, "any", token=token).connect(wait_seconds=5)


async def test_a_connection_ends_when_its_token_expires(locked: tuple[Service, Service]) -> None:
    sio, api = locked
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(sio.url, auth={"token": viewer_token(api, ["expiring"], ttl_s=2)}, wait_timeout=5)
    assert (await client.call("subscribe", {"run_id": "expiring"}, timeout=5))["ok"] is True
    await eventually(lambda: not client.connected, seconds=10, what="the server to end the connection at expiry")


def test_a_token_lists_its_runs_however_old(locked: tuple[Service, Service]) -> None:
    _, api = locked
    assert call(api, "POST", "/api/test-log", KEY, json={"run_id": "listed-old"}).status_code == 200
    for number in range(3):
        assert call(api, "POST", "/api/test-log", KEY, json={"run_id": f"listed-new-{number}"}).status_code == 200
    token = viewer_token(api, ["listed-old"])
    assert [run["run_id"] for run in call(api, "GET", "/api/runs?limit=1", token).json()] == ["listed-old"]


async def test_a_token_for_run_a_gets_a_and_nothing_else(locked: tuple[Service, Service]) -> None:
    sio, api = locked
    token = viewer_token(api, ["scoped-a"])
    client = await LogSubscriber(sio.url, "scoped-a", token=token).connect()
    for other in ("scoped-b", "*"):
        ack = await client.sio.call("subscribe", {"run_id": other}, timeout=5)
        assert ack == {"ok": False, "error": f"run_id: the viewer token does not cover {other}"}
    for run_id in ("scoped-b", "scoped-a"):
        assert call(api, "POST", "/api/test-log", KEY, json={"run_id": run_id, "message": run_id}).status_code == 200
    await eventually(lambda: len(client.lines) == 1, what="run A's line")
    await eventually(lambda: sio.health()["lines"]["received"] >= 2, what="both lines at the server")
    assert [(line["run_id"], line["message"]) for line in client.lines] == [("scoped-a", "[TEST] scoped-a")]
    await client.close()


def test_tokens_expire_and_name_no_secret() -> None:
    token, expires = mint_viewer_token(SECRET, ["r1", "r1", "r2"], 60)
    grant = verify_viewer_token(SECRET, token)
    assert grant.runs == {"r1", "r2"} and grant.expires == expires
    assert grant.allows("r1") and not grant.allows("r3") and not grant.allows("*")
    with pytest.raises(InvalidCredentials, match="expired"):
        verify_viewer_token(SECRET, mint_viewer_token(SECRET, ["r1"], 1, now=time.time() - 10)[0])
    with pytest.raises(InvalidCredentials, match="invalid"):
        verify_viewer_token("another-secret-0123456789abcdef-0123456789", token)


def test_smoke_with_a_key_mints_its_own_token(locked: tuple[Service, Service]) -> None:
    sio, api = locked
    command = [sys.executable, "-m", "livelog", "smoke", "--api-url", api.url, "--socketio-url", sio.url]
    with_key = subprocess.run(
        [*command, "--timeout", "5"], env=service_env(LIVELOG_API_KEYS=OTHER_KEY, LIVELOG_VIEWER_TOKEN_SECRET=SECRET),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert with_key.returncode == 0, with_key.stderr
    without = subprocess.run(
        [*command, "--timeout", "5"], env=service_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert without.returncode == 3 and "HTTP 401" in without.stderr, without.stderr


def test_token_command_prints_a_token_the_servers_accept() -> None:
    env = service_env(LIVELOG_VIEWER_TOKEN_SECRET=SECRET)
    result = subprocess.run(
        [sys.executable, "-m", "livelog", "token", "--runs", "a,b", "--ttl", "120"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert verify_viewer_token(SECRET, result.stdout.strip()).runs == {"a", "b"}
    refused = subprocess.run(
        [sys.executable, "-m", "livelog", "token"], env=service_env(), capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "LIVELOG_VIEWER_TOKEN_SECRET" in refused.stderr


@pytest.mark.parametrize(
    ("component", "settings", "named"),
    [
        ("api", {"LIVELOG_API_KEYS": KEY}, "LIVELOG_VIEWER_TOKEN_SECRET"),
        ("socketio", {"LIVELOG_API_KEYS": KEY}, "LIVELOG_VIEWER_TOKEN_SECRET"),
        ("api", {"LIVELOG_API_KEYS": KEY, "LIVELOG_VIEWER_TOKEN_SECRET": "short"}, "LIVELOG_VIEWER_TOKEN_SECRET"),
        ("api", {"LIVELOG_VIEWER_TOKEN_SECRET": SECRET}, "LIVELOG_API_KEYS"),
    ],
)
def test_keys_and_token_secret_go_together(component: str, settings: dict[str, str], named: str) -> None:
    """Either alone would fail open: keys alone leave Socket.IO to anyone, a secret alone lets anyone mint."""
    result = subprocess.run(
        [sys.executable, "-m", "livelog", "serve", component], env=service_env(**settings),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("livelog: bad configuration: ") and named in result.stderr, result.stderr


async def test_a_frontend_on_another_origin_uses_a_token(module_services: Services) -> None:
    """The seed's Next.js case: its origin in LIVELOG_CORS_ORIGINS, a viewer token in Authorization and in auth."""
    origin = "https://app.example"
    sio, api = module_services.pair(**SETTINGS, LIVELOG_CORS_ORIGINS=origin)
    preflight = httpx.options(
        f"{api.url}/api/runs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    token = viewer_token(api, ["*"])
    runs = httpx.get(f"{api.url}/api/runs", headers={"Origin": origin, "Authorization": f"Bearer {token}"})
    assert runs.status_code == 200 and runs.headers["access-control-allow-origin"] == origin
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(sio.url, headers={"Origin": origin}, auth={"token": token}, wait_timeout=5)
    assert client.connected
    await client.disconnect()
    # another origin is refused at the Engine.IO handshake (checked over HTTP: python-socketio's client sometimes
    # reports the refusal as aiohttp's "Connection closed" instead of a ConnectionError)
    elsewhere = httpx.get(f"{sio.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 400 and "sid" not in elsewhere.text
