"""The shipped multilabel tags bundle (``models/fashion-tags``), served beside the default
bundle by one real server: its samples get their recorded tags and probabilities over REST,
over the Open Inference Protocol's HTTP binding and over its gRPC binding (tritonclient,
unmodified), chosen with ``model=``; the default bundle still answers its own samples."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.grpc import InferenceServerClient

from app.main import create_app
from tests.support.app_setup import answered, make_settings
from tests.support.grpc_requests import triton_inputs
from tests.support.live_server import serving
from tests.support.repo_paths import SAMPLES
from tests.support.server_process import free_port

TAG_SAMPLES = SAMPLES / "tags"
TOLERANCE = 1e-4  # the recorded probabilities were computed by the same pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tag_samples() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((TAG_SAMPLES / "tags.json").read_text())
    assert len(entries) >= 4
    return entries


@pytest.fixture(scope="module")
def servers(default_bundle: Path, tags_bundle: Path) -> Iterator[tuple[str, str]]:
    """(HTTP base URL, gRPC address) of one server with both bundles; the default first."""
    port = free_port()
    settings = make_settings(
        default_bundle, bundles=[default_bundle, tags_bundle], grpc_port=port, intra_op_threads=2
    )
    with serving(create_app(settings), timeout_s=180) as address:
        yield f"http://{address}", f"127.0.0.1:{port}"


def _name(bundle: Path) -> str:
    name: str = json.loads((bundle / "manifest.json").read_text())["name"]
    return name


def _classify(client: httpx.Client, image: Path, text: str, model: str) -> dict[str, Any]:
    files = {"image": (image.name, image.read_bytes(), "image/png")}
    return answered(client.post("/classify", files=files, data={"text": text, "model": model}))


def _ranked(sample: dict[str, Any]) -> list[str]:
    """The sample's tags, most probable first: how the service orders predicted labels."""
    probabilities = sample["probabilities"]
    return sorted(
        sample["tags"], key=lambda tag: (-probabilities[tag], list(probabilities).index(tag))
    )


def test_rest_gives_each_sample_its_tags(
    servers: tuple[str, str], tags_bundle: Path, tag_samples: list[dict[str, Any]]
) -> None:
    name = _name(tags_bundle)
    with httpx.Client(base_url=servers[0], timeout=60) as client:
        listing = [m["name"] for m in answered(client.get("/v1/models"))["models"]]
        assert name in listing
        for sample in tag_samples:
            body = _classify(client, TAG_SAMPLES / sample["file"], sample["text"], name)
            assert (body["task"], body["bundle"]["name"]) == ("multilabel", name)
            assert body["labels"] == _ranked(sample), sample["file"]
            served = {p["label"]: p["probability"] for p in body["predictions"]}
            for tag, expected in sample["probabilities"].items():
                assert served[tag] == pytest.approx(expected, abs=TOLERANCE)


def test_the_default_bundle_still_answers_beside_it(
    servers: tuple[str, str], default_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    with httpx.Client(base_url=servers[0], timeout=60) as client:
        for sample in samples:
            body = _classify(
                client, SAMPLES / sample["file"], sample["text"], _name(default_bundle)
            )
            assert (body["task"], body["label"]) == ("multiclass", sample["label"])


def test_oip_http_and_grpc_give_the_tags(
    servers: tuple[str, str], tags_bundle: Path, tag_samples: list[dict[str, Any]]
) -> None:
    name = _name(tags_bundle)
    images = [(TAG_SAMPLES / sample["file"]).read_bytes() for sample in tag_samples]
    texts = [sample["text"] for sample in tag_samples]
    expected_labels = ["|".join(_ranked(sample)) for sample in tag_samples]
    expected = np.array([list(sample["probabilities"].values()) for sample in tag_samples])
    request = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(image).decode() for image in images],
            },
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts},
        ]
    }
    with httpx.Client(base_url=servers[0], timeout=60) as client:
        metadata = answered(client.get(f"/v2/models/{name}"))
        body = answered(client.post(f"/v2/models/{name}/infer", json=request))
    assert metadata["parameters"]["task"] == "multilabel"
    assert metadata["parameters"]["labels"] == list(tag_samples[0]["probabilities"])
    outputs = {output["name"]: output for output in body["outputs"]}
    rows = np.array(outputs["probabilities"]["data"]).reshape(expected.shape)
    np.testing.assert_allclose(rows, expected, atol=TOLERANCE)
    assert outputs["labels"]["data"] == expected_labels

    with InferenceServerClient(servers[1]) as grpc_client:
        result = grpc_client.infer(name, triton_inputs(images, texts))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=TOLERANCE)
    assert [value.decode() for value in result.as_numpy("labels")] == expected_labels
