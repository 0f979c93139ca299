"""Inference request and response bodies: JSON, or JSON followed by binary tensor data.

A request with binary data says how long its JSON object is in the
``Inference-Header-Content-Length`` header; each binary input gives its size as the
``binary_data_size`` parameter, and the inputs' data follow the JSON object in the order of the
inputs. A response is built the same way when an output is asked for as binary data.
Bodies compressed with ``Content-Encoding: gzip`` or ``deflate`` are accepted (as Triton's
clients send them), decompressed to at most the body limit.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.errors import InvalidTensor, PayloadTooLarge, UnsupportedMediaType, quoted_name
from app.oip.schemas import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from app.oip.tensors import (
    BYTES,
    FP32,
    deserialize_bytes,
    element_count,
    flatten,
    fp32_bytes,
)
from app.oip.tensors import serialize_bytes as serialize_bytes_elements

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
# Parameters of features this server does not have; refused rather than ignored.
_UNSUPPORTED = {
    "shared_memory_region": "shared memory is not supported",
    "classification": "the classification extension is not supported",
}
# zlib's wbits for each Content-Encoding: gzip header, zlib header.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding``; ``PayloadTooLarge`` over ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType("Content-Encoding must be gzip, deflate or identity")
    decompressor = zlib.decompressobj(_WBITS[encoding])
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidTensor(f"the body is not valid {encoding} data") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"the decompressed request body is over {limit} bytes")
    if not decompressor.eof:
        raise InvalidTensor(f"the {encoding} data is truncated")
    return data


@dataclass(frozen=True)
class InputTensor:
    """One input of a request: its JSON description and, for binary data, its bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    binary: memoryview | None
    data: list[Any] | None

    @property
    def count(self) -> int:
        return element_count(self.shape)

    def bytes_elements(self) -> list[bytes]:
        """The elements of a BYTES input sent as binary data."""
        if self.binary is None:
            raise ValueError("bytes_elements needs binary data")
        return deserialize_bytes(self.binary, self.count, self.name)

    def json_elements(self) -> list[Any]:
        """The elements of an input sent as JSON, flattened."""
        if self.data is None:
            raise ValueError("json_elements needs JSON data")
        return flatten(self.data, self.count, self.name)


@dataclass(frozen=True)
class ParsedRequest:
    request: InferenceRequest
    inputs: list[InputTensor]


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Split ``body`` into its JSON object and the inputs' binary data, and validate the
    framing (not the model's inputs: names, datatypes and shapes are the model's to check)."""
    json_end = _json_length(header_length, len(body))
    view = memoryview(body)
    try:
        request = InferenceRequest.model_validate_json(body[:json_end])
    except ValidationError as exc:
        raise InvalidTensor(describe(exc)) from None
    inputs: list[InputTensor] = []
    offset = json_end
    for spec in request.inputs:
        _refuse_unsupported(spec.parameters, f"input {quoted_name(spec.name)}")
        size = spec.parameters.binary_data_size if spec.parameters else None
        binary = None
        if size is not None:
            if spec.data is not None:
                raise InvalidTensor(
                    f"input {quoted_name(spec.name)} has both data and binary_data_size"
                )
            if offset + size > len(body):
                raise InvalidTensor(
                    f"input {quoted_name(spec.name)}: binary_data_size {size} runs past the end "
                    "of the body"
                )
            binary = view[offset : offset + size]
            offset += size
        elif spec.data is None:
            raise InvalidTensor(
                f"input {quoted_name(spec.name)} has neither data nor binary_data_size"
            )
        inputs.append(_input(spec, binary))
    if offset != len(body):
        raise InvalidTensor(
            f"{len(body) - offset} bytes of binary data after the JSON object belong to no input"
        )
    return ParsedRequest(request=request, inputs=inputs)


def check_model_names(request: InferenceRequest, *, model: str, version: str) -> None:
    """400 unless the body's ``model_name`` and ``model_version``, when it has them, are the
    path's model and the version served there (an empty version is none, as over gRPC)."""
    if request.model_name is not None and request.model_name != model:
        raise InvalidTensor(
            f"model_name {quoted_name(request.model_name)} in the body is not the model of the "
            f"path, {quoted_name(model)}"
        )
    if request.model_version and request.model_version != version:
        raise InvalidTensor(
            f"model_version {quoted_name(request.model_version)} in the body is not the version "
            f"served at the path, {quoted_name(version)}"
        )


def _input(spec: RequestInput, binary: memoryview | None) -> InputTensor:
    return InputTensor(
        name=spec.name,
        datatype=spec.datatype,
        shape=tuple(spec.shape),
        binary=binary,
        data=spec.data,
    )


def _json_length(header: str | None, body_length: int) -> int:
    if header is None:
        return body_length
    value = header.strip()
    if not value.isdigit() or not 0 < int(value) <= body_length:
        raise InvalidTensor(
            f"{HEADER_LENGTH} must be an integer from 1 to the body's length ({body_length})"
        )
    return int(value)


def _refuse_unsupported(parameters: Any, owner: str) -> None:
    extra = (parameters.model_extra or {}) if parameters is not None else {}
    for key, reason in _UNSUPPORTED.items():
        if key in extra:
            raise InvalidTensor(f"{owner}: {reason}")


def describe(error: ValidationError) -> str:
    """What is wrong with a request's JSON, by field location; the values are not quoted."""
    reasons = []
    for detail in error.errors(include_input=False, include_url=False):
        if detail["type"] == "json_invalid":
            return "the request's JSON object cannot be parsed"
        field = ".".join(str(part) for part in detail["loc"]) or "request"
        reasons.append(f"{field}: {detail['msg']}")
    return "invalid inference request: " + "; ".join(reasons[:5])


@dataclass(frozen=True)
class OutputTensor:
    """One computed output: FP32 from an array, or BYTES from a list of byte strings."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]

    @classmethod
    def of_fp32(cls, name: str, array: np.ndarray) -> OutputTensor:
        return cls(name, FP32, tuple(array.shape), np.asarray(array, dtype=np.float32))

    @classmethod
    def of_bytes(cls, name: str, elements: Sequence[bytes]) -> OutputTensor:
        return cls(name, BYTES, (len(elements),), list(elements))

    def binary_data(self) -> bytes:
        if isinstance(self.values, np.ndarray):
            return fp32_bytes(self.values)
        return serialize_bytes_elements(self.values)

    def json_data(self) -> list[Any]:
        if isinstance(self.values, np.ndarray):
            data: list[Any] = self.values.reshape(-1).tolist()
            return data
        return [element.decode("utf-8") for element in self.values]


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    header_length: int | None  # the JSON object's length when binary data follows it


def select_outputs(request: InferenceRequest, available: Sequence[str]) -> list[tuple[str, bool]]:
    """The outputs to return, in order, each with whether it goes as binary data."""
    default = bool(request.parameters and request.parameters.binary_data_output)
    if request.outputs is None:
        return [(name, default) for name in available]
    selected: list[tuple[str, bool]] = []
    for output in request.outputs:
        if output.name not in available:
            raise InvalidTensor(
                f"unknown output {quoted_name(output.name)}; the model has {', '.join(available)}"
            )
        if any(name == output.name for name, _ in selected):
            raise InvalidTensor(f"output {quoted_name(output.name)} is requested twice")
        _refuse_unsupported(output.parameters, f"output {quoted_name(output.name)}")
        binary = output.parameters.binary_data if output.parameters else None
        selected.append((output.name, default if binary is None else binary))
    return selected


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
    selection: Sequence[tuple[str, bool]],
) -> EncodedResponse:
    """The response body: the JSON object, then the binary outputs' data in their order."""
    by_name = {output.name: output for output in outputs}
    described: list[ResponseOutput] = []
    chunks: list[bytes] = []
    for name, binary in selection:
        output = by_name[name]
        if binary:
            data = output.binary_data()
            chunks.append(data)
            described.append(_described(output, parameters={"binary_data_size": len(data)}))
        else:
            described.append(_described(output, data=output.json_data()))
    response = InferenceResponse(
        model_name=model_name, model_version=model_version, id=request_id, outputs=described
    )
    header = response.model_dump_json(exclude_none=True).encode()
    if not chunks:
        return EncodedResponse(header, None)
    return EncodedResponse(header + b"".join(chunks), len(header))


def _described(
    output: OutputTensor,
    *,
    parameters: dict[str, int] | None = None,
    data: list[Any] | None = None,
) -> ResponseOutput:
    return ResponseOutput(
        name=output.name,
        shape=list(output.shape),
        datatype=output.datatype,
        parameters=parameters,
        data=data,
    )
