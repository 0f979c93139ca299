"""The Open Inference Protocol over gRPC, driven by tritonclient's gRPC client, unmodified (and
by the generated stub for typed contents), against a real server on the tiny bundle: health,
metadata, inference equal to /classify, one modality, errors with their codes, API keys,
overload, deadlines and the metrics; the server stays healthy after hostile calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import InferenceServerClient, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from app import __version__
from app.main import create_app
from tests.support.app_setup import classified_rows, make_settings
from tests.support.gated_service import IN_POOL, Gate, gated_factory
from tests.support.grpc_requests import triton_inputs, typed_infer_request
from tests.support.images import encode_image, photo
from tests.support.live_server import serving, serving_with_grpc
from tests.support.server_process import free_port
from tests.support.tiny_bundle import LABELS

NAME, VERSION = "tiny-test-bundle", "0.0.1"
IMAGES = [encode_image(photo(60 + 9 * i, 48 + 5 * i, seed=i)) for i in range(3)]
TEXTS = ["a small cat", "the big blue dog photo", "a red bird"]
KEY = "grpc-key"
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def servers(optional_bundle_dir: Path) -> Iterator[tuple[str, str]]:
    """(HTTP address, gRPC address) of one server."""
    with serving_with_grpc(
        optional_bundle_dir, max_items_per_request=4, max_body_bytes=MAX_BODY
    ) as both:
        yield both


@pytest.fixture
def client(servers: tuple[str, str]) -> Iterator[Any]:
    with InferenceServerClient(servers[1]) as triton:
        yield triton


def _inputs(images: list[bytes] | None, texts: list[str] | None) -> list[Any]:
    return list(triton_inputs(images, texts))


def _code(exc: InferenceServerException) -> str:
    return str(exc.status())


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(NAME)
    assert client.is_model_ready(NAME, VERSION)
    assert not client.is_model_ready("other")
    assert not client.is_model_ready(NAME, "9")
    server = client.get_server_metadata(as_json=True)
    assert (server["name"], server["version"]) == ("fusionserve", __version__)
    metadata = client.get_model_metadata(NAME, as_json=True)
    assert metadata["versions"] == [VERSION]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        ("image", "BYTES"),
        ("text", "BYTES"),
    ]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [
        ("probabilities", ["-1", str(len(LABELS))]),
        ("label", ["-1"]),
        ("labels", ["-1"]),
    ]


def test_infer_equals_classify(client: Any, servers: tuple[str, str]) -> None:
    result = client.infer(NAME, _inputs(IMAGES, TEXTS), request_id="g-1")
    response = result.get_response(as_json=True)
    assert (response["model_name"], response["model_version"], response["id"]) == (
        NAME,
        VERSION,
        "g-1",
    )
    probabilities = result.as_numpy("probabilities")
    assert (probabilities.dtype, probabilities.shape) == (np.float32, (3, len(LABELS)))
    expected = classified_rows(servers[0], IMAGES, TEXTS, LABELS)[0]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
    labels = [label.decode() for label in result.as_numpy("label").tolist()]
    assert labels == [LABELS[int(row.argmax())] for row in expected]


def test_one_modality_and_one_output(client: Any, servers: tuple[str, str]) -> None:
    from tritonclient.grpc import InferRequestedOutput

    result = client.infer(
        NAME, _inputs(None, TEXTS[:2]), outputs=[InferRequestedOutput("probabilities")]
    )
    assert result.as_numpy("label") is None
    expected = classified_rows(servers[0], None, TEXTS[:2], LABELS)[0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6, atol=1e-7)


def test_typed_contents_equal_raw_contents(client: Any, servers: tuple[str, str]) -> None:
    request = service_pb2.ModelInferRequest(model_name=NAME)
    for name, values in (("image", IMAGES), ("text", [t.encode() for t in TEXTS])):
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(values)])
        tensor.contents.bytes_contents.extend(values)
    with grpc.insecure_channel(servers[1]) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert [o.name for o in response.outputs] == ["probabilities", "label", "labels"]
    typed = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, len(LABELS))
    raw = client.infer(NAME, _inputs(IMAGES, TEXTS)).as_numpy("probabilities")
    np.testing.assert_array_equal(typed, raw)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("fp32 input", "must be BYTES"),
        ("shape [N, 2]", "must be [N] or [N, 1]"),
        ("undecodable image", "item 0"),
        ("unknown input", "unknown input"),
        ("typed fp32 contents", "fp32_contents"),
        ("batch sizes differ", "batch sizes"),
    ],
)
def test_bad_inputs_are_invalid_argument_and_the_server_stays_healthy(
    client: Any, servers: tuple[str, str], case: str, message: str
) -> None:
    request = service_pb2.ModelInferRequest(model_name=NAME)
    text = request.inputs.add(name="text", datatype="BYTES", shape=[1])
    text.contents.bytes_contents.append(b"a cat")
    if case == "fp32 input":
        image = request.inputs.add(name="image", datatype="FP32", shape=[1])
        image.contents.bytes_contents.append(IMAGES[0])
    elif case == "shape [N, 2]":
        image = request.inputs.add(name="image", datatype="BYTES", shape=[1, 2])
        image.contents.bytes_contents.extend([IMAGES[0], IMAGES[1]])
    elif case == "undecodable image":
        image = request.inputs.add(name="image", datatype="BYTES", shape=[1])
        image.contents.bytes_contents.append(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "unknown input":
        audio = request.inputs.add(name="audio", datatype="BYTES", shape=[1])
        audio.contents.bytes_contents.append(b"RIFF")
    elif case == "typed fp32 contents":
        image = request.inputs.add(name="image", datatype="BYTES", shape=[1])
        image.contents.fp32_contents.append(1.0)
    else:
        image = request.inputs.add(name="image", datatype="BYTES", shape=[2])
        image.contents.bytes_contents.extend(IMAGES[:2])
    with grpc.insecure_channel(servers[1]) as channel, pytest.raises(grpc.RpcError) as raised:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert client.is_server_ready()
    assert client.infer(NAME, _inputs(IMAGES[:1], TEXTS[:1])).as_numpy("label") is not None


def test_an_oversized_message_is_resource_exhausted(client: Any) -> None:
    big = [b"\xff\xd8\xff" + bytes(MAX_BODY)]
    with pytest.raises(InferenceServerException) as raised:
        client.infer(NAME, _inputs(big, TEXTS[:1]))
    assert _code(raised.value) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_ready()


def test_unknown_model_and_version_are_not_found(client: Any) -> None:
    for model, version in (("other", ""), (NAME, "9")):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, _inputs(None, TEXTS[:1]), model_version=version)
        assert _code(raised.value) == "StatusCode.NOT_FOUND"


def test_calls_are_counted_in_metrics(client: Any, servers: tuple[str, str]) -> None:
    client.infer(NAME, _inputs(None, TEXTS[:1]))
    text = httpx.get(f"http://{servers[0]}/metrics", timeout=10).text
    assert 'fusionserve_grpc_requests_total{code="OK",method="ModelInfer"}' in text
    assert 'fusionserve_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"}' in text


def test_api_keys_from_authorization_metadata(optional_bundle_dir: Path) -> None:
    port = free_port()
    settings = make_settings(optional_bundle_dir, grpc_port=port, api_keys=[KEY])
    with serving(create_app(settings)), InferenceServerClient(f"127.0.0.1:{port}") as client:
        assert client.is_server_live()  # open, as /v2/health/live
        assert client.is_server_ready()
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
            with pytest.raises(InferenceServerException) as raised:
                client.infer(NAME, _inputs(None, TEXTS[:1]), headers=headers)
            assert _code(raised.value) == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException):
            client.get_model_metadata(NAME)
        good = {"authorization": f"Bearer {KEY}"}
        result = client.infer(NAME, _inputs(None, TEXTS[:1]), headers=good)
        assert result.as_numpy("probabilities").shape == (1, len(LABELS))


def test_overload_and_deadlines(optional_bundle_dir: Path, gate: Gate) -> None:
    with (
        serving_with_grpc(
            optional_bundle_dir,
            engine_factory=gated_factory(gate),
            **IN_POOL,
            max_in_flight=1,
            max_batch_wait_ms=0,
            retry_after_s=3,
        ) as (_, address),
        grpc.insecure_channel(address) as channel,
    ):
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = typed_infer_request(NAME, text=b"a cat")
        gate.hold()
        held = stub.ModelInfer.future(request, timeout=30)
        assert gate.entered.wait(10)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, timeout=10)
        refused: Any = raised.value
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert ("retry-after", "3") in refused.trailing_metadata()
        gate.open.set()
        assert held.result(timeout=10).outputs[0].name == "probabilities"
        gate.hold()
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, timeout=0.5)
        late: Any = raised.value
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        gate.open.set()
        assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
