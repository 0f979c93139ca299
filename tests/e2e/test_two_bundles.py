"""The real default bundle and an int8 copy of it served side by side by one app.

The int8 copy is ``models/default-int8`` where it has been built (``python -m
models.recipes.fashion_mnist.build_int8_bundle``, which needs Fashion-MNIST). Elsewhere, CI
included, the test makes one with the project's own ``quantize-bundle`` command from the
default bundle, calibrated and checked on the shipped samples (about 10 s): a real int8 bundle
either way, so this test always runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.repo_paths import ROOT, SAMPLES

BUILT_INT8_BUNDLE = ROOT / "models" / "default-int8"


@pytest.fixture(scope="module")
def int8_bundle(
    default_bundle: Path, samples: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    if (BUILT_INT8_BUNDLE / "image_encoder.onnx").is_file():
        return BUILT_INT8_BUNDLE
    work = tmp_path_factory.mktemp("int8")
    dataset = work / "samples.jsonl"
    with dataset.open("w") as rows:
        for sample in samples:
            for split in ("train", "val"):  # calibrate on every sample, check on every sample
                row = {"image": sample["file"], "text": sample["text"], "label": sample["label"]}
                rows.write(json.dumps(row | {"split": split}) + "\n")
    out = work / "bundle"
    command = [
        sys.executable, "-m", "models.quantization.quantize_bundle", str(default_bundle),
        str(out), "--calibration-data", str(dataset), "--images", str(SAMPLES),
        "--samples", str(len(samples)), "--check-samples", str(len(samples)), "--no-progress",
    ]  # fmt: skip
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return out


pytestmark = pytest.mark.e2e


def test_fp32_and_int8_side_by_side(
    default_bundle: Path, int8_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    settings = make_settings(default_bundle, bundles=[default_bundle, int8_bundle])
    fp32_name = json.loads((default_bundle / "manifest.json").read_text())["name"]
    int8_name = json.loads((int8_bundle / "manifest.json").read_text())["name"]
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
