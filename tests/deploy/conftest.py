from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.deploy_files import METRICS_PATH, PREFIX


@pytest.fixture(scope="module")
def app_client(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    """A running app on the tiny bundle, ready: the routes the deployment files name."""
    with TestClient(create_app(make_settings(tiny_bundle_dir))) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def exported_metrics(app_client: TestClient) -> set[str]:
    """Names of the metric families in the app's /metrics output."""
    response = app_client.get(METRICS_PATH)
    assert response.status_code == 200
    return {family.name for family in text_string_to_metric_families(response.text)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No FUSIONSERVE_* variable from the test run's environment leaks into Settings()."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch
