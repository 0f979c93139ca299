"""The Open Inference Protocol's clients, unmodified, against a real server on the default
bundle: the sample items, sent in one binary request by tritonclient over HTTP and over gRPC (as
docs/open-inference-protocol.md shows) and by KServe's SDK over REST and gRPC, get /classify's
probabilities and the samples' labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.config.settings import Settings
from app.main import create_app
from tests.support.kserve_sdk import b64, kserve_calls
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


@pytest.fixture(scope="module")
def items(samples: list[dict[str, Any]]) -> tuple[list[bytes], list[str]]:
    """The samples' images and texts."""
    return [(SAMPLES / s["file"]).read_bytes() for s in samples], [s["text"] for s in samples]


@pytest.fixture(scope="module")
def manifest(default_bundle: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((default_bundle / "manifest.json").read_text())
    return loaded


def _triton_infer(module: Any, target: str, name: str, items: tuple[list[bytes], list[str]]) -> Any:
    """One binary request of ``items`` through tritonclient's ``module`` (http or grpc)."""
    inputs = []
    for tensor_name, values in zip(("image", "text"), items, strict=True):
        tensor = module.InferInput(tensor_name, [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array(values, dtype=np.object_))
        inputs.append(tensor)
    with module.InferenceServerClient(target) as client:
        assert client.is_model_ready(name)
        return client.infer(name, inputs)


def test_tritonclient_equals_classify(
    address: str,
    manifest: dict[str, Any],
    items: tuple[list[bytes], list[str]],
    samples: list[dict[str, Any]],
) -> None:
    result = _triton_infer(httpclient, address, manifest["name"], items)
    probabilities = result.as_numpy("probabilities")
    labels = [label.decode() for label in result.as_numpy("label").tolist()]
    assert labels == [s["label"] for s in samples]
    for i, (image, text) in enumerate(zip(*items, strict=True)):
        files = {"image": ("item.png", image, "image/png"), "text": (None, text)}
        response = httpx.post(f"http://{address}/classify", files=files, timeout=60)
        by_label = {p["label"]: p["probability"] for p in response.json()["predictions"]}
        expected = np.array([by_label[label] for label in manifest["labels"]], dtype=np.float32)
        np.testing.assert_array_equal(probabilities[i], expected)
        assert probabilities[i].argmax() == samples[i]["label_index"]


def test_tritonclient_grpc_equals_http(
    address: str,
    manifest: dict[str, Any],
    items: tuple[list[bytes], list[str]],
    samples: list[dict[str, Any]],
) -> None:
    import tritonclient.grpc as grpcclient

    over_http = _triton_infer(httpclient, address, manifest["name"], items)
    over_grpc = _triton_infer(grpcclient, f"127.0.0.1:{GRPC_PORT}", manifest["name"], items)
    np.testing.assert_array_equal(
        over_grpc.as_numpy("probabilities"), over_http.as_numpy("probabilities")
    )
    labels = [label.decode() for label in over_grpc.as_numpy("label").tolist()]
    assert labels == [s["label"] for s in samples]


def test_kserve_sdk_equals_tritonclient(
    address: str,
    manifest: dict[str, Any],
    items: tuple[list[bytes], list[str]],
    samples: list[dict[str, Any]],
) -> None:
    expected = _triton_infer(httpclient, address, manifest["name"], items)
    expected_probabilities = expected.as_numpy("probabilities")
    call = {"op": "infer", "model": manifest["name"], "images": b64(items[0]), "texts": items[1]}
    outcomes = kserve_calls(
        [
            call | {"client": "rest", "url": f"http://{address}"},
            call | {"client": "grpc", "url": f"127.0.0.1:{GRPC_PORT}"},
        ]
    )
    for outcome in outcomes:
        assert "ok" in outcome, outcome
        outputs = outcome["ok"]["outputs"]
        probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float32)
        np.testing.assert_array_equal(
            probabilities.reshape(expected_probabilities.shape), expected_probabilities
        )
        assert outputs["label"]["data"] == [s["label"] for s in samples]
