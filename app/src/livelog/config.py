"""Configuration from the environment and `.env`, and the broadcaster's endpoint resolution.

The variable names are the seed's (`SOCKETIO_INTERNAL_HOST`, ...) so existing `.env` files keep working;
what livelog added is prefixed `LIVELOG_` in the environment and read here without the prefix.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]

# Addresses a server binds to in order to listen everywhere; dialling them means nothing portable.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
LOOPBACK = "127.0.0.1"
# In LIVELOG_CORS_ORIGINS: any origin may connect.
ANY_ORIGIN = "*"


def _livelog(name: str) -> str:
    return f"LIVELOG_{name}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True, str_strip_whitespace=True
    )

    rest_api_host: str = LOOPBACK
    rest_api_port: Port = 8000
    socketio_host: str = LOOPBACK
    socketio_port: Port = 7000
    socketio_internal_host: str | None = None
    # a Unix socket the Socket.IO server listens on too, for an nginx on the same host (see listeners.py)
    socketio_socket: Path | None = Field(None, validation_alias=_livelog("SOCKETIO_SOCKET"))

    broadcast_token: SecretStr | None = Field(None, validation_alias=_livelog("BROADCAST_TOKEN"))
    # callers of /api/* must send one of these as a bearer token; none configured: the API is open
    api_keys: Annotated[list[SecretStr], NoDecode] = Field([], validation_alias=_livelog("API_KEYS"))
    # signs viewer tokens; when set, the Socket.IO server refuses connections without a valid one
    # (HS256: at least 32 bytes, RFC 7518 3.2)
    viewer_token_secret: SecretStr | None = Field(None, min_length=32, validation_alias=_livelog("VIEWER_TOKEN_SECRET"))
    cors_origins: Annotated[list[str], NoDecode] = Field([], validation_alias=_livelog("CORS_ORIGINS"))
    redis_url: SecretStr | None = Field(None, validation_alias=_livelog("REDIS_URL"))
    data_dir: Path = Field(Path("livelog-data"), validation_alias=_livelog("DATA_DIR"))
    # lines per run the Socket.IO server keeps for late or reconnecting clients
    backlog_size: int = Field(1000, ge=1, le=1_000_000, validation_alias=_livelog("BACKLOG_SIZE"))
    # lines the broadcaster holds while the Socket.IO server is away; the oldest go first
    queue_size: int = Field(10_000, ge=1, le=10_000_000, validation_alias=_livelog("QUEUE_SIZE"))
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, validation_alias=_livelog("MAX_BODY_BYTES"))
    log_level: str = Field("INFO", validation_alias=_livelog("LOG_LEVEL"))
    # runs one API key may have going at once (429 beyond)
    max_runs_per_key: int = Field(10, ge=1, le=10_000, validation_alias=_livelog("MAX_RUNS_PER_KEY"))
    # lines one subscribe replays at most (the newest; a client fetches older ones from the API)
    max_replay_lines: int = Field(1000, ge=0, le=100_000, validation_alias=_livelog("MAX_REPLAY_LINES"))
    # Socket.IO connections (WebSocket or long-polling requests) one server process holds at once; more are refused
    max_connections: int = Field(10_000, ge=1, le=1_000_000, validation_alias=_livelog("MAX_CONNECTIONS"))
    # a WebSocket client whose output stays unread this long (in all, within twice as long) is dropped; it may resume
    stalled_client_seconds: float = Field(10, gt=0, le=3600, validation_alias=_livelog("STALLED_CLIENT_SECONDS"))
    # an Engine.IO session not connected to the namespace this long after its handshake is closed (connect_deadline.py)
    connect_timeout_seconds: float = Field(45, gt=0, le=3600, validation_alias=_livelog("CONNECT_TIMEOUT_SECONDS"))
    # rooms one Socket.IO connection may be subscribed to at once
    max_subscriptions: int = Field(100, ge=1, le=100_000, validation_alias=_livelog("MAX_SUBSCRIPTIONS"))
    # finished runs older than this are deleted, with their lines, from the API's store and the backlog
    retention_days: float = Field(30, gt=0, le=36_500, validation_alias=_livelog("RETENTION_DAYS"))
    # and the oldest finished runs go while the store holds more lines than this
    retention_lines: int = Field(5_000_000, ge=1, validation_alias=_livelog("RETENTION_LINES"))

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("socketio_internal_host", "socketio_host")
    @classmethod
    def _hosts_only(cls, value: str | None) -> str | None:
        for host in (value or "").split(","):
            if host.strip() and not _is_host(host.strip()):
                raise ValueError(f"{host.strip()!r} is not a host name or IP address (the port is SOCKETIO_PORT)")
        return value

    def problems_serving(self) -> list[str]:
        """What keeps this configuration from serving either service (a client such as `livelog smoke` needs less).

        Keys and the viewer token secret go together: keys alone would leave Socket.IO open to anyone, a secret
        alone would let anyone mint tokens.
        """
        if self.api_keys and self.viewer_token_secret is None:
            return ["LIVELOG_VIEWER_TOKEN_SECRET: LIVELOG_API_KEYS is set, so it must be too (browsers need tokens)"]
        if self.viewer_token_secret is not None and not self.api_keys:
            return ["LIVELOG_API_KEYS: LIVELOG_VIEWER_TOKEN_SECRET is set, so it must be too (or anyone mints tokens)"]
        return []


class ConfigurationError(Exception):
    """The environment or `.env` holds a value livelog cannot run with; the message names the variable."""


def load_settings(env_file: str | None = None) -> Settings:
    """Settings from the environment and `.env` (or `env_file`), or ConfigurationError naming each bad variable."""
    try:
        return Settings(_env_file=env_file) if env_file else Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(problems) from None


def reveal_all(secrets: list[SecretStr]) -> list[str]:
    return [secret.get_secret_value() for secret in secrets]


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host in WILDCARD_HOSTS or bool(_HOSTNAME.match(host))
    return True


def url_host(host: str) -> str:
    """The host as it goes into a URL: IPv6 literals bracketed."""
    host = host.strip()
    if host.startswith("["):
        return host
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def socketio_dial_hosts(settings: Settings) -> list[str]:
    """The hosts the broadcaster dials: never `localhost`, which resolves to ::1 first on many VMs.

    SOCKETIO_INTERNAL_HOST may name several Socket.IO nodes, comma-separated; the broadcaster fails over.
    """
    if settings.socketio_internal_host:
        return [host.strip() for host in settings.socketio_internal_host.split(",") if host.strip()]
    if settings.socketio_host not in WILDCARD_HOSTS:
        return [settings.socketio_host]
    return [LOOPBACK]


def socketio_endpoints(settings: Settings) -> list[str]:
    return [f"http://{url_host(host)}:{settings.socketio_port}" for host in socketio_dial_hosts(settings)]


def socketio_endpoint(settings: Settings) -> str:
    """The first (on one host, the only) Socket.IO endpoint."""
    return socketio_endpoints(settings)[0]


def api_endpoint(settings: Settings) -> str:
    host = LOOPBACK if settings.rest_api_host in WILDCARD_HOSTS else settings.rest_api_host
    return f"http://{url_host(host)}:{settings.rest_api_port}"
