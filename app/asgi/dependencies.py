"""The FastAPI dependencies every adapter's routes take: the serving core and the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config.settings import Settings
from app.core.serving_core import ServingCore


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# worker thread, which would add a thread hand-off (and a wait for a free worker under load)
# to every request, health checks included.
async def get_core(request: Request) -> ServingCore:
    core: ServingCore = request.app.state.core
    return core


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CoreDep = Annotated[ServingCore, Depends(get_core)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
