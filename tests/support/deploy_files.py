"""Shared by the deployment tests: paths, the settings' env prefix, the metrics route, the
Kubernetes version the manifests are checked against and what the Dockerfile says."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.asgi import metrics_route
from app.config.settings import Settings
from tests.support.repo_paths import ROOT

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


KUBERNETES_VERSION = "1.37"


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def dockerfile_uids() -> set[int]:
    """The uid of every USER instruction in the Dockerfile (numeric, or a useradd'ed name)."""
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+([^\s:]+)", text, re.M)
    assert users, "the Dockerfile sets no USER"
    return {int(user) if user.isdigit() else _created_uid(text, user) for user in users}


def _created_uid(dockerfile: str, user: str) -> int:
    created = re.search(rf"useradd\b[^\n]*--uid[ =](\d+)[^\n]*\s{re.escape(user)}\b", dockerfile)
    assert created is not None, f"no useradd --uid for USER {user}"
    return int(created.group(1))
