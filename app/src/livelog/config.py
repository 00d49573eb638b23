"""Configuration from the environment and `.env`, and the broadcaster's endpoint resolution.

The variable names are the seed's (`SOCKETIO_INTERNAL_HOST`, ...) so existing `.env` files keep working;
what livelog added is prefixed `LIVELOG_`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]

# Addresses a server binds to in order to listen everywhere; dialling them means nothing portable.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
LOOPBACK = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    rest_api_host: str = "127.0.0.1"
    rest_api_port: Port = 8000
    socketio_host: str = "127.0.0.1"
    socketio_port: Port = 7000
    socketio_internal_host: str | None = None

    livelog_broadcast_token: SecretStr | None = None
    livelog_cors_origins: Annotated[list[str], NoDecode] = []
    livelog_redis_url: SecretStr | None = None
    livelog_data_dir: Path = Path("livelog-data")
    # lines per run the Socket.IO server keeps for late or reconnecting clients
    livelog_backlog_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # lines the broadcaster holds while the Socket.IO server is away; the oldest go first
    livelog_queue_size: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    livelog_max_body_bytes: Annotated[int, Field(ge=1024)] = 2 * 1024 * 1024
    livelog_log_level: str = "INFO"

    @field_validator("livelog_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("livelog_broadcast_token", "livelog_redis_url", "socketio_internal_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("socketio_internal_host", "socketio_host")
    @classmethod
    def _hosts_only(cls, value: str | None) -> str | None:
        for host in (value or "").split(","):
            if host.strip() and not _is_host(host.strip()):
                raise ValueError(f"{host.strip()!r} is not a host name or IP address (the port is SOCKETIO_PORT)")
        return value

    @property
    def token(self) -> str | None:
        return self.livelog_broadcast_token.get_secret_value() if self.livelog_broadcast_token else None

    @property
    def redis_url(self) -> str | None:
        return self.livelog_redis_url.get_secret_value() if self.livelog_redis_url else None


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
    if settings.socketio_host.strip() not in WILDCARD_HOSTS:
        return [settings.socketio_host.strip()]
    return [LOOPBACK]


def socketio_endpoints(settings: Settings) -> list[str]:
    return [f"http://{url_host(host)}:{settings.socketio_port}" for host in socketio_dial_hosts(settings)]


def socketio_endpoint(settings: Settings) -> str:
    """The first (on one host, the only) Socket.IO endpoint."""
    return socketio_endpoints(settings)[0]


def api_endpoint(settings: Settings) -> str:
    host = settings.rest_api_host.strip()
    if host in WILDCARD_HOSTS:
        host = LOOPBACK
    return f"http://{url_host(host)}:{settings.rest_api_port}"
