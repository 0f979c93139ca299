"""tritonclient against a real server on the default bundle: the sample items, sent in one
binary request over HTTP and over gRPC (as docs/open-inference-protocol.md shows), get
/classify's probabilities and the samples' labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.main import create_app
from app.settings import Settings
from tests.support.live_server import serving
from tests.support.repo_paths import SAMPLES
from tests.support.server_process import free_port

httpclient = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] (dev extra) is not installed"
)

pytestmark = pytest.mark.e2e


GRPC_PORT = free_port()


@pytest.fixture(scope="module")
def address(default_bundle: Path) -> Iterator[str]:
    # One item per model run, in both paths: the same arrays in, so the same numbers out.
    settings = Settings(
        bundle_path=default_bundle,
        device="cpu",
        exit_on_startup_failure=False,
        max_batch_size=1,
        grpc_port=GRPC_PORT,
    )
    with serving(create_app(settings), timeout_s=120) as served:
        yield served


def test_tritonclient_equals_classify(
    address: str, default_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    manifest = json.loads((default_bundle / "manifest.json").read_text())
    images = [(SAMPLES / s["file"]).read_bytes() for s in samples]
    texts = [s["text"] for s in samples]
    inputs = []
    for name, values in (("image", images), ("text", texts)):
        tensor = httpclient.InferInput(name, [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array(values, dtype=np.object_))
        inputs.append(tensor)
    with httpclient.InferenceServerClient(address) as client:
        assert client.is_model_ready(manifest["name"], manifest["version"])
        result = client.infer(manifest["name"], inputs)
    probabilities = result.as_numpy("probabilities")
    labels = [label.decode() for label in result.as_numpy("label").tolist()]
    assert labels == [s["label"] for s in samples]
    for i, (image, text) in enumerate(zip(images, texts, strict=True)):
        files = {"image": ("item.png", image, "image/png"), "text": (None, text)}
        response = httpx.post(f"http://{address}/classify", files=files, timeout=60)
        by_label = {p["label"]: p["probability"] for p in response.json()["predictions"]}
        expected = np.array([by_label[label] for label in manifest["labels"]], dtype=np.float32)
        np.testing.assert_array_equal(probabilities[i], expected)
        assert probabilities[i].argmax() == samples[i]["label_index"]


def test_tritonclient_grpc_equals_http(
    address: str, default_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    import tritonclient.grpc as grpcclient

    manifest = json.loads((default_bundle / "manifest.json").read_text())
    images = [(SAMPLES / s["file"]).read_bytes() for s in samples]
    texts = [s["text"] for s in samples]
    results = []
    for module, target in ((httpclient, address), (grpcclient, f"127.0.0.1:{GRPC_PORT}")):
        inputs = []
        for name, values in (("image", images), ("text", texts)):
            tensor = module.InferInput(name, [len(values)], "BYTES")
            tensor.set_data_from_numpy(np.array(values, dtype=np.object_))
            inputs.append(tensor)
        with module.InferenceServerClient(target) as client:
            assert client.is_model_ready(manifest["name"])
            results.append(client.infer(manifest["name"], inputs))
    over_http, over_grpc = results
    np.testing.assert_array_equal(
        over_grpc.as_numpy("probabilities"), over_http.as_numpy("probabilities")
    )
    labels = [label.decode() for label in over_grpc.as_numpy("label").tolist()]
    assert labels == [s["label"] for s in samples]
