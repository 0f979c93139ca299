"""The serving process must never import torch (it slows ONNX Runtime 2-3x) or transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.repo_paths import ROOT

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from app.main import create_app
from app.config.settings import Settings
from tests.support.images import encode_image, photo
from tests.support.app_setup import wait_ready

settings = Settings(bundle_path=sys.argv[1], device="cpu", exit_on_startup_failure=False)
with TestClient(create_app(settings)) as client:
    wait_ready(client)
    files = {"image": ("a.png", encode_image(photo()), "image/png")}
    assert client.post("/classify", files=files, data={"text": "a cat"}).status_code == 200
import app.cli, app.main  # noqa: E401  (the CLI module too)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "models"})
print("HEAVY:" + ",".join(heavy))
"""


def test_serving_process_does_not_import_torch(tiny_bundle_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert "HEAVY:\n" in result.stdout, result.stdout
