"""The REST API's typed dependencies: what a route needs, taken from the running app in one place.

Each is an `async def`: none of them waits on anything, and FastAPI would run a plain `def` in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from livelog.auth import Grant, InvalidCredentials, bearer, is_one_of, key_id, verify_viewer_token
from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings, reveal, reveal_all
from livelog.runs import RunManager
from livelog.store import RunStore


@dataclass(frozen=True)
class ApiState:
    """What the API's lifespan builds, kept on `app.state.livelog`."""

    settings: Settings
    store: RunStore
    broadcaster: HttpBroadcaster
    runs: RunManager


async def _state(request: Request) -> ApiState:
    state = request.app.state.livelog
    assert isinstance(state, ApiState)
    return state


StateDep = Annotated[ApiState, Depends(_state)]


async def _settings(state: StateDep) -> Settings:
    return state.settings


async def _store(state: StateDep) -> RunStore:
    return state.store


async def _broadcaster(state: StateDep) -> HttpBroadcaster:
    return state.broadcaster


async def _runs(state: StateDep) -> RunManager:
    return state.runs


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[RunStore, Depends(_store)]
BroadcasterDep = Annotated[HttpBroadcaster, Depends(_broadcaster)]
RunsDep = Annotated[RunManager, Depends(_runs)]


@dataclass(frozen=True)
class Caller:
    """Who calls: a key holder (or anyone, when no keys are configured), or a viewer with a grant of runs."""

    grant: Grant | None = None
    # who holds the key (a digest of it, never the key); "" when the API is open
    owner: str = ""

    def may_read(self, run_id: str) -> bool:
        return self.grant is None or self.grant.allows(run_id)


# one answer for every wrong or missing credential: it does not say which part was wrong
_UNAUTHORIZED = HTTPException(status_code=401, detail="credentials required", headers={"WWW-Authenticate": "Bearer"})


def _authenticate(request: Request, settings: Settings, *, viewers: bool) -> Caller:
    """A key holder; with `viewers`, also the holder of a valid viewer token. Anyone when no keys are configured."""
    keys = reveal_all(settings.api_keys)
    if not keys:
        return Caller()
    credential = bearer(request.headers.get("authorization"))
    if credential is None:
        raise _UNAUTHORIZED
    if is_one_of(keys, credential):
        return Caller(owner=key_id(credential))
    secret = reveal(settings.viewer_token_secret)
    if not viewers or secret is None:
        raise _UNAUTHORIZED
    try:
        return Caller(grant=verify_viewer_token(secret, credential))
    except InvalidCredentials:
        raise _UNAUTHORIZED from None


async def _key_holder(request: Request, settings: SettingsDep) -> Caller:
    return _authenticate(request, settings, viewers=False)


async def _reader(request: Request, settings: SettingsDep) -> Caller:
    return _authenticate(request, settings, viewers=True)


KeyHolderDep = Annotated[Caller, Depends(_key_holder)]
ReaderDep = Annotated[Caller, Depends(_reader)]
