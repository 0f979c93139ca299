"""The real default bundle and its int8 copy served side by side by one app (the int8 bundle
is built by ``python -m models.recipes.fashion_mnist.build_int8_bundle``; skipped where it has not
been built)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.paths import ROOT, SAMPLES
from tests.support.service import make_settings, wait_ready

INT8_BUNDLE = ROOT / "models" / "default-int8"

pytestmark = pytest.mark.e2e


def test_fp32_and_int8_side_by_side(default_bundle: Path, samples: list[dict[str, Any]]) -> None:
    if not (INT8_BUNDLE / "image_encoder.onnx").is_file():
        pytest.skip(
            "models/default-int8 is not built "
            "(python -m models.recipes.fashion_mnist.build_int8_bundle)"
        )
    settings = make_settings(default_bundle, bundles=[default_bundle, INT8_BUNDLE])
    fp32_name = json.loads((default_bundle / "manifest.json").read_text())["name"]
    int8_name = json.loads((INT8_BUNDLE / "manifest.json").read_text())["name"]
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout_s=120)
        listing = [m["name"] for m in client.get("/v1/models").json()["models"]]
        answers = {}
        for sample in samples:
            image = (SAMPLES / sample["file"]).read_bytes()
            for name in (fp32_name, int8_name):
                response = client.post(
                    "/classify",
                    files={"image": (sample["file"], image, "image/png")},
                    data={"text": sample["text"], "model": name},
                )
                assert response.status_code == 200, response.json()
                answers[(sample["file"], name)] = response.json()

    assert listing == [fp32_name, int8_name]
    for sample in samples:
        fp32 = answers[(sample["file"], fp32_name)]
        int8 = answers[(sample["file"], int8_name)]
        assert fp32["bundle"]["name"] == fp32_name
        assert int8["bundle"]["name"] == int8_name
        assert fp32["probability"] == pytest.approx(sample["fused_probability"], abs=1e-5)
        # The samples are confident, correct answers: int8 agrees on every one of them.
        assert int8["label"] == fp32["label"] == sample["label"]
        assert int8["probability"] == pytest.approx(fp32["probability"], abs=0.05)
