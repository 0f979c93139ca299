from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.tiny_bundle import make_tiny_bundle


def encode_image(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth synthetic photo (gradients + noise) so resampling differences would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def classify_files(image: bytes | None, text: str | None) -> dict[str, Any]:
    """The multipart parts of a /classify request; a modality that is None is left out."""
    files: dict[str, Any] = {}
    if image is not None:
        files["image"] = ("item.png", image, "image/png")
    if text is not None:
        files["text"] = (None, text)
    return files


def answered(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a response that must be a 200."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_ready(client: TestClient, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        assert response.json()["status"] == "loading", response.json()
        time.sleep(0.01)
    raise AssertionError(f"service not ready after {timeout_s}s: {client.get('/readyz').json()}")


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture
def tiny_bundle(tiny_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy that a test may break."""
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))


def make_settings(bundle: Path, **overrides: object) -> Settings:
    """Test settings: CPU, one ORT thread, and a failed load leaves the process running."""
    base: dict[str, object] = {
        "bundle_path": bundle,
        "device": "cpu",
        "intra_op_threads": 1,
        "exit_on_startup_failure": False,
    }
    return Settings(**(base | overrides))


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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help=f"also run tests marked slow (or set {RUN_SLOW_ENV}=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get(RUN_SLOW_ENV, "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason=f"slow: run with --run-slow or {RUN_SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
