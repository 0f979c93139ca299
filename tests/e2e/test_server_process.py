"""One real run: `fusionserve serve` as a process on loopback, and `fusionserve predict`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.repo_paths import ROOT, SAMPLES
from tests.support.server_process import start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(default_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    started = start_server(default_bundle, tmp_path_factory.mktemp("server") / "server.log")
    process, log_path = started.process, started.log
    try:
        started.wait_ready()
        yield started.base
    finally:
        process.terminate()
        # A graceful stop on SIGTERM is a normal exit.
        assert process.wait(timeout=30) == 0, log_path.read_text()
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
