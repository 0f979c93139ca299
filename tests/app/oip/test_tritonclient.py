"""tritonclient's HTTP client, the official Open Inference Protocol client, unmodified, against a
real server (uvicorn on loopback) on the tiny bundles: health, metadata, inference with binary
and with JSON tensors, one modality, compression, errors and API keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app import __version__
from app.main import create_app
from tests.support.app_setup import classified_rows, make_settings
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.tiny_bundle import LABELS

httpclient = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] (dev extra) is not installed"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

NAME, VERSION = "tiny-test-bundle", "0.0.1"
IMAGES = [encode_image(photo(60 + 9 * i, 48 + 5 * i, seed=i)) for i in range(3)]
TEXTS = ["a small cat", "the big blue dog photo", "a red bird"]
KEY = "triton-key"


@pytest.fixture(scope="module")
def address(optional_bundle_dir: Path) -> Iterator[str]:
    """A server on the tiny bundle whose head answers without either modality."""
    settings = make_settings(optional_bundle_dir, max_items_per_request=4)
    with serving(create_app(settings)) as served:
        yield served


@pytest.fixture
def client(address: str) -> Iterator[Any]:
    with httpclient.InferenceServerClient(address) as triton:
        yield triton


def _inputs(
    images: list[bytes] | None,
    texts: list[str] | None,
    *,
    binary: bool = True,
    column: bool = False,
) -> list[Any]:
    """InferInputs as a tritonclient user writes them; in JSON, images go as base64."""
    inputs = []
    for name, values in (("image", images), ("text", texts)):
        if values is None:
            continue
        if name == "image" and not binary:
            values = [base64.b64encode(v) for v in values]  # type: ignore[misc]
        array = np.array(values, dtype=np.object_)
        if column:
            array = array.reshape(-1, 1)
        tensor = httpclient.InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _labels(result: Any) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").tolist()]


def test_health_and_readiness(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(NAME)
    assert client.is_model_ready(NAME, VERSION)
    assert not client.is_model_ready("other")
    assert not client.is_model_ready(NAME, "9")


def test_metadata(client: Any) -> None:
    assert client.get_server_metadata() == {
        "name": "fusionserve",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }
    metadata = client.get_model_metadata(NAME)
    assert metadata == client.get_model_metadata(NAME, VERSION)
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        ("image", "BYTES"),
        ("text", "BYTES"),
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [
        ("probabilities", "FP32", [-1, len(LABELS)]),
        ("label", "BYTES", [-1]),
        ("labels", "BYTES", [-1]),
    ]
    assert metadata["parameters"]["labels"] == LABELS


def test_binary_infer_equals_classify(client: Any, address: str) -> None:
    # tritonclient's defaults: binary inputs, and no outputs named, so binary outputs too.
    result = client.infer(NAME, _inputs(IMAGES, TEXTS), request_id="r-7")
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        NAME,
        VERSION,
        "r-7",
    )
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    probabilities = result.as_numpy("probabilities")
    assert (probabilities.dtype, probabilities.shape) == (np.float32, (3, len(LABELS)))
    expected, labels = classified_rows(address, IMAGES, TEXTS, LABELS)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
    assert _labels(result) == labels


def test_json_infer_equals_binary_infer(client: Any) -> None:
    binary = client.infer(NAME, _inputs(IMAGES, TEXTS))
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]
    as_json = client.infer(NAME, _inputs(IMAGES, TEXTS, binary=False, column=True), outputs=outputs)
    assert all("data" in o for o in as_json.get_response()["outputs"])
    np.testing.assert_allclose(
        as_json.as_numpy("probabilities"), binary.as_numpy("probabilities"), rtol=1e-6, atol=1e-7
    )
    assert _labels(as_json) == _labels(binary)


@pytest.mark.parametrize(("images", "texts"), [(IMAGES, None), (None, TEXTS)])
def test_one_modality(
    client: Any, address: str, images: list[bytes] | None, texts: list[str] | None
) -> None:
    result = client.infer(NAME, _inputs(images, texts), model_version=VERSION)
    expected, labels = classified_rows(address, images, texts, LABELS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6, atol=1e-7)
    assert _labels(result) == labels


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client: Any, algorithm: str) -> None:
    plain = client.infer(NAME, _inputs(IMAGES[:1], TEXTS[:1]))
    packed = client.infer(
        NAME, _inputs(IMAGES[:1], TEXTS[:1]), request_compression_algorithm=algorithm
    )
    np.testing.assert_array_equal(packed.as_numpy("probabilities"), plain.as_numpy("probabilities"))


def test_errors_surface_with_our_message(client: Any) -> None:
    broken = [IMAGES[0], IMAGES[1][:40], IMAGES[2]]
    cases = [
        (lambda: client.infer(NAME, _inputs(broken, TEXTS)), "400", "item 1: the image"),
        (
            lambda: client.infer("other", _inputs(IMAGES, TEXTS)),
            "404",
            "no model named 'other' is served",
        ),
        (lambda: client.get_model_metadata(NAME, "9"), "404", "has no version '9'"),
        (lambda: client.infer(NAME, _inputs(IMAGES * 2, TEXTS * 2)), "413", "6 items; at most 4"),
        (
            lambda: client.infer(NAME, _inputs(IMAGES, TEXTS[:2])),
            "400",
            "batch sizes 3 and 2; they must be equal",
        ),
    ]
    for call, status, message in cases:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == status
        assert message in caught.value.message()
    assert client.is_server_ready()  # the connection pool survives the errors


def test_api_keys(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir, api_keys=[KEY]))
    keyed = {"Authorization": f"Bearer {KEY}"}
    with serving(app) as served, httpclient.InferenceServerClient(served) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert not client.is_model_ready(NAME)
        assert client.is_model_ready(NAME, headers=keyed)
        with pytest.raises(InferenceServerException) as caught:
            client.get_server_metadata()
        assert (caught.value.status(), caught.value.message()) == (
            "401",
            "missing or invalid API key",
        )
        result = client.infer(NAME, _inputs(IMAGES[:1], TEXTS[:1]), headers=keyed)
        assert result.as_numpy("probabilities").shape == (1, len(LABELS))
