"""The REST API's typed dependencies: what a route needs, taken from the running app in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from livelog.broadcaster import HttpBroadcaster
from livelog.config import Settings
from livelog.runs import RunManager
from livelog.store import RunStore


@dataclass(frozen=True)
class ApiState:
    """What the API's lifespan builds, kept on `app.state.livelog`."""

    settings: Settings
    store: RunStore
    broadcaster: HttpBroadcaster
    runs: RunManager


def _state(request: Request) -> ApiState:
    state = request.app.state.livelog
    assert isinstance(state, ApiState)
    return state


StateDep = Annotated[ApiState, Depends(_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


def _store(state: StateDep) -> RunStore:
    return state.store


def _broadcaster(state: StateDep) -> HttpBroadcaster:
    return state.broadcaster


def _runs(state: StateDep) -> RunManager:
    return state.runs


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[RunStore, Depends(_store)]
BroadcasterDep = Annotated[HttpBroadcaster, Depends(_broadcaster)]
RunsDep = Annotated[RunManager, Depends(_runs)]
