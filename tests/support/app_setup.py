"""Test settings and the client-side helpers every API test uses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.settings import Settings


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


def make_settings(bundle: Path, **overrides: object) -> Settings:
    """Test settings: CPU, one ORT thread, a failed load leaves the process running, and no
    gRPC port unless asked for (many apps live in one test process)."""
    base: dict[str, object] = {
        "bundle_path": bundle,
        "device": "cpu",
        "intra_op_threads": 1,
        "exit_on_startup_failure": False,
        "grpc_port": 0,
    }
    return Settings(**(base | overrides))
