"""Shared by the deployment tests: paths, the settings' env prefix and the metrics route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.api import metrics_route
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "FUSIONSERVE_"
(METRICS_PATH,) = (route.path for route in metrics_route.router.routes)

Manifest = dict[str, Any]


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the server reads them from this environment (use with ``clean_env``)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def is_setting(variable: str) -> bool:
    """Whether ``variable`` is the environment name of a field of ``Settings``."""
    name = variable.removeprefix(PREFIX)
    return variable.startswith(PREFIX) and name.lower() in Settings.model_fields
