"""Credentials: API keys for callers of the REST API, and short-lived signed viewer tokens scoped to runs.

A viewer token is a JWT (HS256) whose `runs` claim lists the run ids it may read, or `*` for every run, and
whose `exp` ends it. The API mints them for a key holder; the Socket.IO server and the API's read routes check them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from livelog.models import ALL_RUNS

ALGORITHM = "HS256"
MAX_TTL_S = 7 * 24 * 3600


class InvalidCredentials(Exception):
    """A credential that is missing, malformed, forged or expired; the message says which, for the log only."""


@dataclass(frozen=True)
class Grant:
    """What a viewer token lets its holder read."""

    runs: frozenset[str]
    expires: float

    def allows(self, run_id: str) -> bool:
        """`run_id` may be a run or ALL_RUNS; only a grant of every run allows ALL_RUNS."""
        return ALL_RUNS in self.runs or (run_id != ALL_RUNS and run_id in self.runs)


def mint_viewer_token(secret: str, runs: list[str], ttl_s: int, now: float | None = None) -> tuple[str, float]:
    """A signed token for `runs` that expires `ttl_s` seconds from `now`; returns the token and its expiry."""
    issued = time.time() if now is None else now
    expires = issued + ttl_s
    claims = {"runs": sorted(set(runs)), "iat": int(issued), "exp": int(expires)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), float(int(expires))


def verify_viewer_token(secret: str, token: object) -> Grant:
    if not isinstance(token, str) or not token:
        raise InvalidCredentials("no viewer token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "runs"]})
    except jwt.ExpiredSignatureError as exc:
        raise InvalidCredentials("viewer token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidCredentials(f"viewer token invalid: {exc}") from exc
    runs = claims["runs"]
    if not isinstance(runs, list) or not all(isinstance(run, str) for run in runs):
        raise InvalidCredentials("viewer token invalid: runs is not a list of run ids")
    return Grant(runs=frozenset(runs), expires=float(claims["exp"]))


def is_one_of(secrets: list[str], given: str) -> bool:
    """Whether `given` is one of `secrets` (API keys, the broadcast token), compared in constant time."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(secret.encode(), given.encode())
    return matched


def key_id(key: str) -> str:
    """A name for an API key that does not reveal it (for limits and logs)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header."""
    scheme, _, credential = (authorization or "").partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None
