"""The Open Inference Protocol codec (app.oip): tensor framing, request parsing and response
building, and FusionServe's tensors. Cross-checked with tritonclient's own (de)serialisers."""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bundle.manifest import FusionHead
from app.core.classification import ClassifyInput
from app.errors import (
    DeadlineExceeded,
    FieldTooLarge,
    InvalidImage,
    InvalidTensor,
    ModalityRequired,
    PayloadTooLarge,
    RequestError,
    TooManyItems,
    UnsupportedImageFormat,
    UnsupportedMediaType,
)
from app.oip.classifier_model import ItemFailed, Limits, request_items
from app.oip.codec import (
    InputTensor,
    OutputTensor,
    decode_content,
    encode_response,
    parse_request,
    select_outputs,
)
from app.oip.schemas import InferenceRequest
from app.oip.tensors import deserialize_bytes, flatten, serialize_bytes

tritonclient_utils = pytest.importorskip(
    "tritonclient.utils", reason="tritonclient[http] (dev extra) is not installed"
)
from tritonclient.http import InferResult  # noqa: E402

SHA = "0" * 64
REF = {"file": "x.onnx", "sha256": SHA}
BOTH_REQUIRED = FusionHead(**REF, image_input="i", text_input="t", output="o")
BOTH_OPTIONAL = FusionHead(
    **REF,
    image_input="i",
    text_input="t",
    output="o",
    image_present="ip",
    text_present="tp",
)
LIMITS = Limits(max_items=4, max_image_bytes=100, max_text_bytes=20)


def _frame(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _body(header: dict[str, Any], *binary: bytes) -> tuple[bytes, str | None]:
    """A request body and its Inference-Header-Content-Length (None without binary data)."""
    text = json.dumps(header).encode()
    return text + b"".join(binary), str(len(text)) if binary else None


def _binary_input(name: str, data: bytes, shape: list[int] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": "BYTES",
        "shape": shape or [1],
        "parameters": {"binary_data_size": len(data)},
    }


# BYTES framing


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_bytes_framing_round_trips(elements: list[bytes]) -> None:
    framed = serialize_bytes(elements)
    assert deserialize_bytes(framed, len(elements), "x") == elements


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=10))
def test_framing_matches_tritonclient(elements: list[bytes]) -> None:
    array = np.array(elements, dtype=np.object_)
    theirs = tritonclient_utils.serialize_byte_tensor(array).item()
    assert serialize_bytes(elements) == theirs
    assert deserialize_bytes(theirs, len(elements), "x") == elements
    ours = tritonclient_utils.deserialize_bytes_tensor(serialize_bytes(elements))
    assert list(ours) == elements


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (b"\x05\x00", 1, "element 0 has a truncated length"),
        (_frame(b"ab") + b"\x01\x00\x00", 2, "element 1 has a truncated length"),
        (struct.pack("<I", 10) + b"abc", 1, "element 0 is 10 bytes but only 3 remain"),
        (_frame(b"a", b"b"), 1, ": 5 bytes left after its 1 elements"),
        (_frame(b"a"), 2, "1 elements, its shape says 2"),
        (b"", 1, "0 elements, its shape says 1"),
        (struct.pack("<I", 2**32 - 1), 1, "is 4294967295 bytes but only 0 remain"),
    ],
)
def test_malformed_framing_is_a_clear_400(data: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message) as caught:
        deserialize_bytes(data, count, "image")
    assert caught.value.status_code == 400
    assert "input 'image'" in caught.value.message


def test_json_data_may_be_nested_row_major() -> None:
    assert flatten([["a"], ["b"], ["c"]], 3, "t") == ["a", "b", "c"]
    assert flatten([[["a", "b"]], [["c", "d"]]], 4, "t") == ["a", "b", "c", "d"]
    with pytest.raises(InvalidTensor, match="2 elements in data, its shape says 3"):
        flatten([["a"], ["b"]], 3, "t")
    with pytest.raises(InvalidTensor, match="more than 1 elements"):
        flatten(["a", "b", "c"], 1, "t")


# Request bodies


def test_binary_inputs_are_cut_from_the_body_in_order() -> None:
    image, text = _frame(b"\x89PNG"), _frame("héllo".encode())
    header = {"inputs": [_binary_input("image", image), _binary_input("text", text)]}
    parsed = parse_request(*_body(header, image, text))
    assert [t.name for t in parsed.inputs] == ["image", "text"]
    assert parsed.inputs[0].bytes_elements() == [b"\x89PNG"]
    assert parsed.inputs[1].bytes_elements() == ["héllo".encode()]


def test_json_and_binary_inputs_mix() -> None:
    text = _frame(b"a cat")
    header = {
        "id": "r1",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": [["aGk="]]},
            _binary_input("text", text),
        ],
    }
    parsed = parse_request(*_body(header, text))
    assert parsed.request.id == "r1"
    assert parsed.inputs[0].json_elements() == ["aGk="]
    assert parsed.inputs[0].shape == (1, 1)
    assert parsed.inputs[1].bytes_elements() == [b"a cat"]


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e3", "", "999999"])
def test_header_length_must_be_within_the_body(value: str) -> None:
    body, _ = _body({"inputs": []})
    with pytest.raises(InvalidTensor, match="Inference-Header-Content-Length must be"):
        parse_request(body, value)


def test_header_length_may_be_the_whole_body() -> None:
    body, _ = _body(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    )
    assert parse_request(body, str(len(body))).inputs[0].json_elements() == ["a"]


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [
        ({"inputs": [_binary_input("text", b"x" * 9)]}, b"x" * 8, "runs past the end"),
        ({"inputs": [_binary_input("text", b"x" * 4)]}, b"x" * 6, "2 bytes of binary data"),
        (
            {"inputs": [_binary_input("text", b"1234") | {"data": ["a"]}]},
            b"1234",
            "both data and binary_data_size",
        ),
        (
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]},
            b"",
            "neither data nor binary_data_size",
        ),
    ],
)
def test_binary_sections_must_match_the_sizes(
    header: dict[str, Any], binary: bytes, message: str
) -> None:
    text = json.dumps(header).encode()
    body = text + binary
    with pytest.raises(InvalidTensor, match=message):
        parse_request(body, str(len(text)) if binary else None)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1], "data": []}]}, "shape"),
        ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1.5], "data": []}]}, "shape"),
        ({"input": []}, "inputs"),
        ({"inputs": [], "outputs": [{"name": "label", "paramters": {}}]}, "paramters"),
        ({"inputs": [_binary_input("text", b"x") | {"parameters": {"binary_data_size": "1"}}]}, ""),
        ({"inputs": [], "parameters": {"binary_data_output": "yes"}}, "binary_data_output"),
        ({"inputs": [], "id": 42}, "id"),
    ],
)
def test_json_object_is_validated(header: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTensor, match="invalid inference request") as caught:
        parse_request(json.dumps(header).encode(), None)
    assert message in caught.value.message


def test_unparseable_json_and_unsupported_features_are_400() -> None:
    with pytest.raises(InvalidTensor, match="cannot be parsed"):
        parse_request(b'{"inputs": [', None)
    shared = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}
    shared["parameters"] = {"shared_memory_region": "r"}
    with pytest.raises(InvalidTensor, match="shared memory is not supported"):
        parse_request(json.dumps({"inputs": [shared]}).encode(), None)


def test_hostile_names_are_not_quoted_back() -> None:
    header = {"inputs": [{"name": "<script>", "datatype": "BYTES", "shape": [1]}]}
    with pytest.raises(InvalidTensor) as caught:
        parse_request(json.dumps(header).encode(), None)
    assert "<script>" not in caught.value.message
    assert "(name not shown)" in caught.value.message


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("GZIP", gzip.compress)],
)
def test_compressed_bodies_are_decoded(encoding: str, compress: Any) -> None:
    body = b'{"inputs": []}' * 10
    assert decode_content(compress(body), encoding, limit=len(body)) == body
    with pytest.raises(PayloadTooLarge, match="decompressed request body is over"):
        decode_content(compress(body), encoding, limit=len(body) - 1)


def test_bad_encodings_are_refused() -> None:
    assert decode_content(b"abc", None, 10) == b"abc"
    assert decode_content(b"abc", "identity", 10) == b"abc"
    with pytest.raises(UnsupportedMediaType):
        decode_content(b"abc", "br", 10)
    with pytest.raises(InvalidTensor, match="not valid gzip"):
        decode_content(b"not gzip", "gzip", 100)
    with pytest.raises(InvalidTensor, match="truncated"):
        decode_content(gzip.compress(b"x" * 100)[:-12], "gzip", 1000)


# Outputs and response bodies


def _request(**fields: Any) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": []} | fields)


def test_output_selection() -> None:
    available = ("probabilities", "label")
    assert select_outputs(_request(), available) == [("probabilities", False), ("label", False)]
    binary = _request(parameters={"binary_data_output": True})
    assert select_outputs(binary, available) == [("probabilities", True), ("label", True)]
    chosen = _request(
        parameters={"binary_data_output": True},
        outputs=[
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "probabilities"},
        ],
    )
    assert select_outputs(chosen, available) == [("label", False), ("probabilities", True)]
    for outputs, message in (
        ([{"name": "logits"}], "unknown output 'logits'"),
        ([{"name": "label"}, {"name": "label"}], "requested twice"),
        ([{"name": "label", "parameters": {"classification": 2}}], "classification extension"),
    ):
        with pytest.raises(InvalidTensor, match=message):
            select_outputs(_request(outputs=outputs), available)


def _outputs() -> list[OutputTensor]:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    return [
        OutputTensor.of_fp32("probabilities", probabilities),
        OutputTensor.of_bytes("label", ["dög".encode(), b"cat"]),
    ]


@pytest.mark.parametrize("binary", [False, True])
def test_responses_decode_with_tritonclient(binary: bool) -> None:
    encoded = encode_response(
        model_name="m",
        model_version="1",
        request_id="r",
        outputs=_outputs(),
        selection=[("probabilities", binary), ("label", binary)],
    )
    assert (encoded.header_length is not None) is binary
    result = InferResult.from_response_body(encoded.body, header_length=encoded.header_length)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), _outputs()[0].values)
    labels = result.as_numpy("label")
    assert [bytes(x) if binary else x for x in labels] == (
        ["dög".encode(), b"cat"] if binary else ["dög", "cat"]
    )
    header = json.loads(encoded.body[: encoded.header_length or len(encoded.body)])
    assert (header["model_name"], header["model_version"], header["id"]) == ("m", "1", "r")
    assert [o["shape"] for o in header["outputs"]] == [[2, 3], [2]]


def test_json_floats_are_exact_float32() -> None:
    encoded = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=_outputs(),
        selection=[("probabilities", False)],
    )
    body = json.loads(encoded.body)
    assert "id" not in body
    assert "model_version" not in body
    data = np.array(body["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(data, _outputs()[0].values)


# FusionServe's tensors


def _json_input(name: str, data: list[Any], shape: list[int] | None = None) -> InputTensor:
    return InputTensor(name, "BYTES", tuple(shape or [len(data)]), None, data)


def _bin_input(name: str, *elements: bytes, shape: list[int] | None = None) -> InputTensor:
    return InputTensor(
        name, "BYTES", tuple(shape or [len(elements)]), memoryview(_frame(*elements)), None
    )


def test_items_pair_images_and_texts() -> None:
    images = _bin_input("image", b"i0", b"i1", shape=[2, 1])
    texts = _json_input("text", ["t0", "t1"])
    items = request_items([texts, images], BOTH_REQUIRED, LIMITS)
    assert items == [ClassifyInput(b"i0", "t0"), ClassifyInput(b"i1", "t1")]
    encoded = _json_input("image", [base64.b64encode(b"\x00\xff").decode()])
    text = _bin_input("text", "é".encode())
    assert request_items([encoded, text], BOTH_REQUIRED, LIMITS) == [
        ClassifyInput(b"\x00\xff", "é")
    ]


def test_a_modality_may_be_left_out_when_the_head_allows() -> None:
    text = _json_input("text", ["t0"])
    assert request_items([text], BOTH_OPTIONAL, LIMITS) == [ClassifyInput(None, "t0")]
    image = _bin_input("image", b"i")
    assert request_items([image], BOTH_OPTIONAL, LIMITS) == [ClassifyInput(b"i", None)]
    with pytest.raises(InvalidTensor, match="input 'image' is required"):
        request_items([text], BOTH_REQUIRED, LIMITS)


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        ([], InvalidTensor, "no input"),
        ([_json_input("pixels", ["a"])], InvalidTensor, "unknown input 'pixels'"),
        ([_json_input("text", ["a"]), _json_input("text", ["b"])], InvalidTensor, "twice"),
        (
            [InputTensor("text", "FP32", (1,), None, [1.0])],
            InvalidTensor,
            "must be BYTES, not 'FP32'",
        ),
        ([_json_input("text", ["a", "b"], [1, 2])], InvalidTensor, r"must be \[N\] or \[N, 1\]"),
        ([_json_input("text", [], [0])], InvalidTensor, "the batch is empty"),
        (
            [_json_input("text", ["a"]), _bin_input("image", b"1", b"2")],
            InvalidTensor,
            "batch sizes 2 and 1",
        ),
        ([_json_input("text", ["a"] * 5)], TooManyItems, "5 items; at most 4"),
        ([_bin_input("image", b"x" * 101)], PayloadTooLarge, "item 0 is over 100 bytes"),
        (
            [_json_input("image", [base64.b64encode(b"x" * 101).decode()])],
            PayloadTooLarge,
            "over 100 bytes",
        ),
        ([_json_input("image", ["x" * 200])], PayloadTooLarge, "over 100 bytes"),
        ([_json_input("image", ["not base64!"])], InvalidTensor, "not valid base64"),
        ([_json_input("image", [42])], InvalidTensor, "must be a base64 string"),
        ([_bin_input("text", b"ok", b"\xff\xfe")], InvalidTensor, "item 1 is not valid UTF-8"),
        ([_json_input("text", [7])], InvalidTensor, "item 0 must be a string"),
        ([_json_input("text", ["é" * 11])], FieldTooLarge, "over 20 bytes"),
        ([_bin_input("text", b"x" * 21)], FieldTooLarge, "item 0 is over 20 bytes"),
    ],
)
def test_bad_inputs(inputs: list[InputTensor], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        request_items(inputs, BOTH_OPTIONAL, LIMITS)


@pytest.mark.parametrize(
    ("cause", "status"),
    [
        (InvalidImage("broken"), 400),
        (UnsupportedImageFormat("svg"), 400),
        (ModalityRequired("needs text"), 400),
        (PayloadTooLarge("big"), 413),
        (DeadlineExceeded("late"), 504),
    ],
)
def test_an_item_failure_names_the_item(cause: RequestError, status: int) -> None:
    failed = ItemFailed(3, cause)
    assert failed.status_code == status
    assert failed.message == f"item 3: {cause.message}"
    assert failed.code == cause.code
