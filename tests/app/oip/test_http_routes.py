"""The Open Inference Protocol routes (/v2) on the tiny bundle: metadata, health, inference in
JSON and with binary tensor data, and the same limits, refusals and keys as /classify."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import __version__
from app.config.settings import Settings
from app.core.engine import Engine, build_engine
from app.main import create_app
from app.oip.error_bodies import reshape
from tests.support.app_setup import answered, classify_files, make_settings, wait_ready
from tests.support.gated_service import Gate, default_runner, gated_app, ready_client
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS

NAME, VERSION = "tiny-test-bundle", "0.0.1"
INFER = f"/v2/models/{NAME}/infer"
IMAGES = [encode_image(photo(60 + 9 * i, 48 + 5 * i, seed=i)) for i in range(3)]
TEXTS = ["a small cat", "the big blue dog photo", "a red bird"]
KEY = "v2-key"


def _bytes_input(name: str, data: list[str]) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [len(data)], "data": data}


def _json_request(
    images: list[bytes] | None = IMAGES, texts: list[str] | None = TEXTS, **fields: Any
) -> dict[str, Any]:
    inputs = []
    if images is not None:
        inputs.append(_bytes_input("image", [base64.b64encode(i).decode() for i in images]))
    if texts is not None:
        inputs.append(_bytes_input("text", texts))
    return {"inputs": inputs} | fields


def _frame(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _binary_request(
    images: list[bytes], texts: list[str], **fields: Any
) -> tuple[bytes, dict[str, str]]:
    """A body with both inputs as binary data, and its Inference-Header-Content-Length."""
    data = [_frame(images), _frame([t.encode() for t in texts])]
    inputs = [
        {
            "name": name,
            "datatype": "BYTES",
            "shape": [len(images), 1],
            "parameters": {"binary_data_size": len(chunk)},
        }
        for name, chunk in zip(("image", "text"), data, strict=True)
    ]
    header = json.dumps({"inputs": inputs} | fields).encode()
    return header + b"".join(data), {"Inference-Header-Content-Length": str(len(header))}


def _outputs(response: httpx.Response) -> dict[str, Any]:
    """Each output's data by name, decoded by hand from JSON or binary data."""
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    body = response.content
    header = json.loads(body[: int(length)] if length else body)
    binary, offset, outputs = body[int(length or len(body)) :], 0, {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            outputs[output["name"]] = output["data"]
            continue
        chunk, offset = binary[offset : offset + size], offset + size
        if output["datatype"] == "FP32":
            outputs[output["name"]] = np.frombuffer(chunk, dtype="<f4").tolist()
        else:
            labels, at = [], 0
            while at < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, at)
                labels.append(chunk[at + 4 : at + 4 + n].decode())
                at += 4 + n
            outputs[output["name"]] = labels
    return outputs


def _classify(client: TestClient, image: bytes | None, text: str | None) -> dict[str, Any]:
    return answered(client.post("/classify", files=classify_files(image, text)))


def _in_label_order(result: dict[str, Any]) -> list[float]:
    by_label = {p["label"]: p["probability"] for p in result["predictions"]}
    return [by_label[label] for label in LABELS]


def _assert_v2_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert message in body["error"], body
    assert response.headers["x-request-id"]


# Metadata and health


def test_server_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": "fusionserve",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for path in (f"/v2/models/{NAME}/ready", f"/v2/models/{NAME}/versions/{VERSION}/ready"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (200, {"name": NAME, "ready": True})


def test_model_metadata(client: TestClient) -> None:
    metadata = client.get(f"/v2/models/{NAME}").json()
    assert metadata == client.get(f"/v2/models/{NAME}/versions/{VERSION}").json()
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == (
        NAME,
        [VERSION],
        "fusionserve",
    )
    assert metadata["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
    ]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "labels", "datatype": "BYTES", "shape": [-1]},
    ]
    assert metadata["parameters"]["labels"] == LABELS
    assert metadata["parameters"]["task"] == "multiclass"
    assert "thresholds" not in metadata["parameters"]
    assert metadata["parameters"]["optional_inputs"] == []


def test_unknown_model_or_version_is_404(client: TestClient) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", f"/v2/models/{NAME}/versions/9"):
        _assert_v2_error(client.get(path), 404, "")
    _assert_v2_error(
        client.get("/v2/models/other"),
        404,
        "no model named 'other' is served (served: tiny-test-bundle)",
    )
    _assert_v2_error(
        client.post("/v2/models/other/infer", json=_json_request()),
        404,
        "'other' is served (served:",
    )
    _assert_v2_error(
        client.post(f"/v2/models/{NAME}/versions/2.0/infer", json=_json_request()),
        404,
        f"model '{NAME}' has no version '2.0'; it has version {VERSION}",
    )
    _assert_v2_error(client.get("/v2/no-such-route"), 404, "Not Found")
    _assert_v2_error(client.delete(INFER), 405, "Method Not Allowed")


# Inference


def test_json_infer_equals_classify(client: TestClient) -> None:
    response = client.post(INFER, json=_json_request(id="req-1"))
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (NAME, VERSION, "req-1")
    probabilities, labels, predicted = body["outputs"]
    assert (probabilities["name"], probabilities["datatype"]) == ("probabilities", "FP32")
    assert probabilities["shape"] == [3, len(LABELS)]
    assert (labels["name"], labels["datatype"], labels["shape"]) == ("label", "BYTES", [3])
    rows = np.array(probabilities["data"], dtype=np.float32).reshape(3, len(LABELS))
    for i, (image, text) in enumerate(zip(IMAGES, TEXTS, strict=True)):
        expected = _classify(client, image, text)
        np.testing.assert_allclose(rows[i], _in_label_order(expected), rtol=1e-6, atol=1e-7)
        assert labels["data"][i] == expected["label"]
        # A multiclass bundle predicts its one most probable class.
        assert predicted["data"][i] == "|".join(expected["labels"]) == expected["label"]
    assert (predicted["name"], predicted["datatype"], predicted["shape"]) == (
        "labels",
        "BYTES",
        [3],
    )
    assert len({tuple(row) for row in rows.tolist()}) == 3  # the items differ


def test_binary_infer_equals_json_infer(client: TestClient) -> None:
    as_json = _outputs(client.post(INFER, json=_json_request()))
    body, headers = _binary_request(IMAGES, TEXTS, parameters={"binary_data_output": True})
    response = client.post(INFER, content=body, headers=headers)
    assert response.headers["content-type"] == "application/octet-stream"
    as_binary = _outputs(response)
    np.testing.assert_allclose(
        as_binary["probabilities"], as_json["probabilities"], rtol=1e-6, atol=1e-7
    )
    assert as_binary["label"] == as_json["label"]


def test_outputs_are_chosen_and_ordered_by_the_request(client: TestClient) -> None:
    body, headers = _binary_request(
        IMAGES[:1],
        TEXTS[:1],
        outputs=[{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
    )
    response = client.post(INFER, content=body, headers=headers)
    header = json.loads(
        response.content[: int(response.headers["inference-header-content-length"])]
    )
    assert [o["name"] for o in header["outputs"]] == ["label", "probabilities"]
    assert "data" not in header["outputs"][0]
    assert len(header["outputs"][1]["data"]) == len(LABELS)
    only = client.post(INFER, json=_json_request(outputs=[{"name": "label"}])).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]


def test_compressed_request_body(client: TestClient) -> None:
    body, headers = _binary_request(IMAGES[:2], TEXTS[:2])
    response = client.post(
        INFER, content=gzip.compress(body), headers=headers | {"Content-Encoding": "gzip"}
    )
    assert _outputs(response) == _outputs(client.post(INFER, content=body, headers=headers))
    _assert_v2_error(
        client.post(INFER, content=body, headers=headers | {"Content-Encoding": "br"}),
        415,
        "Content-Encoding must be gzip, deflate or identity",
    )


def test_same_runner_as_classify(client: TestClient) -> None:
    runner = client.app.state.core.registry.default.runner  # type: ignore[attr-defined]
    before = runner.stats()["items"]
    assert client.post(INFER, json=_json_request()).status_code == 200
    assert runner.stats()["items"] == before + 3
    metrics = client.get("/metrics").text
    assert 'route="/v2/models/{model_name}/infer"' in metrics


BROKEN_PNG = IMAGES[0][:40]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (_json_request(texts=None), "input 'text' is required"),
        (_json_request(images=None), "input 'image' is required"),
        (
            _json_request(images=[IMAGES[0], BROKEN_PNG, IMAGES[2]]),
            "item 1: the image",
        ),
        (_json_request(texts=["a cat", "   ", "dog"]), "item 1: text must not be empty"),
        (_json_request(texts=TEXTS[:2]), "batch sizes 3 and 2"),
        ({"inputs": []}, "the request has no input"),
        ({"inputs": [{"name": "image"}]}, "invalid inference request: inputs.0.shape: Field"),
        (
            {"inputs": [_bytes_input("text", ["a"]) | {"datatype": "INT8"}]},
            "must be BYTES, not 'INT8'",
        ),
        ({"inputs": [_bytes_input("sound", ["a"])]}, "unknown input 'sound'"),
        (_json_request(outputs=[{"name": "logits"}]), "unknown output 'logits'"),
    ],
)
def test_bad_requests_are_400(client: TestClient, request_body: Any, message: str) -> None:
    _assert_v2_error(client.post(INFER, json=request_body), 400, message)


def test_body_may_repeat_the_model_name_and_version(client: TestClient) -> None:
    # KServe's SDK writes model_name into every body (InferRequest.to_rest); the answer is
    # the one without it, on either path, with or without the version.
    expected = _outputs(client.post(INFER, json=_json_request()))
    versioned = f"/v2/models/{NAME}/versions/{VERSION}/infer"
    for path, fields in (
        (INFER, {"model_name": NAME}),
        (INFER, {"model_name": NAME, "model_version": VERSION}),
        (INFER, {"model_version": ""}),  # empty: none, as over gRPC
        (versioned, {"model_name": NAME, "model_version": VERSION}),
    ):
        assert _outputs(client.post(path, json=_json_request(**fields))) == expected, fields
    body, headers = _binary_request(IMAGES, TEXTS, model_name=NAME)
    assert (
        _outputs(client.post(INFER, content=body, headers=headers))["label"] == (expected["label"])
    )


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        (INFER, {"model_name": "other"}, "model_name 'other' in the body is not the model of"),
        (INFER, {"model_name": ""}, f"is not the model of the path, '{NAME}'"),
        (
            INFER,
            {"model_version": "9"},
            f"model_version '9' in the body is not the version served at the path, '{VERSION}'",
        ),
        (
            f"/v2/models/{NAME}/versions/{VERSION}/infer",
            {"model_name": NAME, "model_version": "1"},
            "model_version '1' in the body",
        ),
        (INFER, {"model_name": 7}, "model_name: Input should be a valid string"),
        # Everything else stays closed: a misspelt field is reported, not ignored.
        (INFER, {"output": [{"name": "label"}]}, "output: Extra inputs are not permitted"),
        (INFER, {"model": NAME}, "model: Extra inputs are not permitted"),
    ],
)
def test_body_naming_another_model_or_an_unknown_field_is_400(
    client: TestClient, path: str, fields: dict[str, Any], message: str
) -> None:
    _assert_v2_error(client.post(path, json=_json_request(**fields)), 400, message)
    inside = _json_request()
    inside["inputs"][0]["model_name"] = NAME
    _assert_v2_error(client.post(path, json=inside), 400, "inputs.0.model_name: Extra inputs")


def test_malformed_bodies_are_400(client: TestClient) -> None:
    _assert_v2_error(client.post(INFER, content=b"{not json"), 400, "cannot be parsed")
    body, headers = _binary_request(IMAGES[:1], TEXTS[:1])
    for length in ("0", "x", str(len(body) + 1)):
        response = client.post(
            INFER, content=body, headers={"Inference-Header-Content-Length": length}
        )
        _assert_v2_error(response, 400, "Inference-Header-Content-Length must be an integer")
    _assert_v2_error(
        client.post(INFER, content=body[:-3], headers=headers), 400, "runs past the end"
    )
    _assert_v2_error(
        client.post(INFER, content=body + b"xx", headers=headers), 400, "2 bytes of binary data"
    )


def test_limits(tiny_bundle_dir: Path) -> None:
    settings = make_settings(
        tiny_bundle_dir,
        max_items_per_request=2,
        max_image_bytes=max(len(i) for i in IMAGES[:2]),
        max_text_field_bytes=30,
        max_text_chars=10,
    )
    big_image = encode_image(photo(200, 200, seed=9))
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.post(INFER, json=_json_request(IMAGES[:2], ["a cat", "a dog"])).is_success
        cases = [
            (_json_request(), 413, "3 items; at most 2"),
            (_json_request([big_image], ["a cat"]), 413, "input 'image' item 0 is over"),
            (_json_request(IMAGES[:1], ["cat " * 10]), 413, "input 'text' item 0 is over 30"),
            (_json_request(IMAGES[:1], ["a big red cat"]), 400, "item 0: text is 13 characters"),
        ]
        for request_body, status, message in cases:
            _assert_v2_error(client.post(INFER, json=request_body), status, message)
        body, headers = _binary_request([big_image], ["a cat"])
        _assert_v2_error(client.post(INFER, content=body, headers=headers), 413, "is over")


def test_body_limit_before_reading(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, max_body_bytes=1024)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        body, headers = _binary_request(IMAGES[:1], TEXTS[:1])
        assert len(body) > 1024
        response = client.post(INFER, content=body, headers=headers)
        _assert_v2_error(response, 413, "the request body is over 1024 bytes")
        assert response.headers["connection"] == "close"

        def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield body[:1000]
            yield body[1000:]

        _assert_v2_error(
            client.post(INFER, content=streamed(), headers=headers), 413, "over 1024 bytes"
        )
        # Decompressed bodies are held to the same limit.
        packed = gzip.compress(json.dumps(_json_request(None, ["a cat " * 500])).encode())
        assert len(packed) < 1024
        _assert_v2_error(
            client.post(INFER, content=packed, headers={"Content-Encoding": "gzip"}),
            413,
            "decompressed request body is over 1024 bytes",
        )
        # /classify is still gated for its media type.
        response = client.post("/classify", json={"image": "x"})
        assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.fixture(scope="module")
def optional_client(optional_bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(optional_bundle_dir))) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize(("images", "texts"), [(IMAGES, None), (None, TEXTS)])
def test_one_modality_when_the_head_allows(
    optional_client: TestClient, images: list[bytes] | None, texts: list[str] | None
) -> None:
    metadata = optional_client.get(f"/v2/models/{NAME}").json()
    assert metadata["parameters"]["optional_inputs"] == ["image", "text"]
    outputs = _outputs(optional_client.post(INFER, json=_json_request(images, texts)))
    rows = np.array(outputs["probabilities"]).reshape(3, len(LABELS))
    for i in range(3):
        expected = _classify(
            optional_client,
            None if images is None else images[i],
            None if texts is None else texts[i],
        )
        assert expected["missing_modality"] == ("image" if images is None else "text")
        np.testing.assert_allclose(rows[i], _in_label_order(expected), rtol=1e-6, atol=1e-7)
        assert outputs["label"][i] == expected["label"]


# Readiness, overload, deadline and keys


def test_not_ready_while_loading(settings: Settings) -> None:
    release, entered = threading.Event(), threading.Event()

    def slow_factory(s: Settings) -> Engine:
        entered.set()
        assert release.wait(10), "test never released the loader"
        return build_engine(s)

    with TestClient(create_app(settings, engine_factory=slow_factory)) as client:
        assert entered.wait(10)
        assert client.get("/v2/health/live").json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        loading = f"model '{NAME}' is not ready (status: loading)"
        _assert_v2_error(client.get(f"/v2/models/{NAME}/ready"), 503, loading)
        _assert_v2_error(client.get(f"/v2/models/{NAME}"), 503, loading)
        # Refused before the body is read: a junk body would otherwise be a 400.
        _assert_v2_error(client.post(INFER, content=b"junk"), 503, "the model is not ready")
        release.set()
        wait_ready(client)
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post(INFER, json=_json_request()).status_code == 200


def test_failed_load_is_not_live(tiny_bundle: Path) -> None:
    (tiny_bundle / "head.onnx").write_bytes(b"corrupted")
    with TestClient(create_app(make_settings(tiny_bundle))) as client:
        for _ in range(500):
            if client.get("/readyz").json()["status"] == "failed":
                break
            threading.Event().wait(0.01)
        live = client.get("/v2/health/live")
        assert (live.status_code, live.json()) == (503, {"live": False})
        assert client.get("/v2/health/ready").status_code == 503


@pytest.mark.anyio
async def test_overload_is_503_with_retry_after(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, max_in_flight=2, retry_after_s=3)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        running = asyncio.create_task(client.post(INFER, json=_json_request(IMAGES[:2], TEXTS[:2])))
        classifier = default_runner(app)
        while classifier.in_flight < 2:
            await asyncio.sleep(0.005)
        refused = await client.post(INFER, content=b"junk")  # refused before parsing
        _assert_v2_error(refused, 503, "limit is 2; retry later")
        assert refused.headers["retry-after"] == "3"
        gate.open.set()
        assert (await running).status_code == 200


@pytest.mark.anyio
async def test_deadline_is_504(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, request_timeout_s=0.2)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        response = await client.post(INFER, json=_json_request(IMAGES[:1], TEXTS[:1]))
        _assert_v2_error(response, 504, "item 0: no result within")
        gate.open.set()


def test_keys(tiny_bundle_dir: Path) -> None:
    with TestClient(create_app(make_settings(tiny_bundle_dir, api_keys=[KEY]))) as client:
        wait_ready(client)
        for path in ("/v2/health/live", "/v2/health/ready"):
            assert client.get(path).status_code == 200
        for path in ("/v2", f"/v2/models/{NAME}", f"/v2/models/{NAME}/ready"):
            response = client.get(path)
            _assert_v2_error(response, 401, "missing or invalid API key")
            assert response.headers["www-authenticate"] == "Bearer"
        _assert_v2_error(client.post(INFER, json=_json_request()), 401, "invalid API key")
        keyed = {"Authorization": f"Bearer {KEY}"}
        assert client.post(INFER, json=_json_request(), headers=keyed).status_code == 200
        schema = client.get("/openapi.json", headers=keyed).json()
        operation = schema["paths"]["/v2/models/{model_name}/infer"]["post"]
        assert operation["security"] == [{"bearerAuth": []}]
        assert "ErrorBody" in str(operation["responses"]["401"])
        assert "security" not in schema["paths"]["/v2/health/ready"]["get"]


def test_envelopes_are_reshaped_and_other_bodies_kept() -> None:
    envelope = {"error": {"code": "x", "message": "bad thing", "request_id": "1"}}
    assert json.loads(reshape(json.dumps(envelope).encode())) == {"error": "bad thing"}
    for body in (b'{"ready": false}', b"not json", b'{"error": "already"}', b"[1]"):
        assert reshape(body) == body


def test_openapi_documents_v2(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(operation["responses"]) >= {
        "200",
        "400",
        "401",
        "404",
        "413",
        "415",
        "500",
        "503",
        "504",
    }
    assert set(operation["responses"]["200"]["content"]) == {
        "application/json",
        "application/octet-stream",
    }
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["required"] == ["inputs"]
    assert "$ref" not in json.dumps(request)
