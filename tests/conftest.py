from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config.settings import Settings
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.cuda import cuda_available
from tests.support.gated_service import Gate
from tests.support.tiny_bundle import make_tiny_bundle, make_tiny_bundle_with_head
from tests.support.without_torch import block_torch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gate() -> Gate:
    """Model calls of an app built with ``gated_factory(gate)`` pass until the test holds it."""
    return Gate.opened()


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture(scope="session")
def optional_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle whose head answers without either modality (not to be changed)."""
    root = tmp_path_factory.mktemp("optional-bundle")
    make_tiny_bundle_with_head(root, presence=True)
    return root


@pytest.fixture
def tiny_bundle(tiny_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy that a test may break."""
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))


@pytest.fixture
def settings(tiny_bundle_dir: Path) -> Settings:
    return make_settings(tiny_bundle_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


# Slow tests (e.g. building the container images, minutes) run only when asked for.
RUN_SLOW_ENV = "FUSIONSERVE_RUN_SLOW"
# Ray's switch for clusters on Windows and macOS; off, Ray uses 127.0.0.1 as every node's
# address (ray._private.services.get_node_ip_address) on Linux too.
LOOPBACK_RAY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--without-torch",
        action="store_true",
        help="make `import torch` fail (the service's tests must not need it)",
    )
    parser.addoption(
        "--run-slow",
        action="store_true",
        help=f"also run tests marked slow (or set {RUN_SLOW_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--without-torch"):
        block_torch()
    # Every Ray node a test starts (tests/support/ray_cluster.py), and every driver, binds to
    # loopback: Ray reads this before its first import, and the tests' children inherit it.
    os.environ[LOOPBACK_RAY_ENV] = "0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not cuda_available():
        no_cuda = pytest.mark.skip(reason="cuda: no CUDA provider or GPU here")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(no_cuda)
    if config.getoption("--run-slow") or os.environ.get(RUN_SLOW_ENV, "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason=f"slow: run with --run-slow or {RUN_SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
