"""One real run: `fusionserve serve` as a process on loopback, and `fusionserve predict`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(default_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = os.environ | {"FUSIONSERVE_PORT": str(port), "FUSIONSERVE_DEVICE": "cpu"}
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        # A file, not a pipe: an unread pipe would block the server once it fills.
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--bundle", str(default_bundle)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"server not ready in 120 s:\n{log_path.read_text()}")
        yield base
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), log_path.read_text()
        assert "Application shutdown complete" in log_path.read_text()


def test_http_and_cli_agree(server: str, samples: list[dict[str, Any]]) -> None:
    sample = samples[0]
    image = SAMPLES / sample["file"]
    response = httpx.post(
        f"{server}/classify",
        files={"image": (image.name, image.read_bytes(), "image/png")},
        data={"text": sample["text"], "top_k": "3"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    http = response.json()
    assert http["label"] == sample["label"]
    assert len(http["predictions"]) == 3

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "predict",
            str(image),
            "--text",
            sample["text"],
            "--top-k",
            "3",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    printed = json.loads(cli.stdout)
    assert [p["label"] for p in printed["predictions"]] == [p["label"] for p in http["predictions"]]
    for mine, theirs in zip(printed["predictions"], http["predictions"], strict=True):
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-5)


def test_health_endpoints(server: str) -> None:
    assert httpx.get(f"{server}/livez").json() == {"status": "alive"}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["ready"] is True
    assert ready["providers"]["image_encoder"] == ["CPUExecutionProvider"]
    info = httpx.get(f"{server}/info").json()
    assert info["labels"][7] == "Sneaker"
