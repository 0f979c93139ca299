"""Test settings and the client-side helpers every API test uses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from app.config.settings import Settings


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


def classified_rows(
    address: str,
    images: Sequence[bytes] | None,
    texts: Sequence[str] | None,
    labels: Sequence[str],
) -> tuple[np.ndarray, list[str]]:
    """/classify's answers from the server at ``address`` (``host:port``), item by item: the
    probabilities in ``labels`` order, and each item's label."""
    count = len(images if images is not None else texts or [])
    rows, predicted = [], []
    for i in range(count):
        files = classify_files(
            None if images is None else images[i], None if texts is None else texts[i]
        )
        result = answered(httpx.post(f"http://{address}/classify", files=files, timeout=30))
        by_label = {p["label"]: p["probability"] for p in result["predictions"]}
        rows.append([by_label[label] for label in labels])
        predicted.append(result["label"])
    return np.array(rows, dtype=np.float32), predicted


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
