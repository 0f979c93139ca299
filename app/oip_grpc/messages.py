"""gRPC messages <-> the Open Inference Protocol's tensors (``app.oip``).

A ``ModelInferRequest`` carries each input's data either in ``raw_input_contents`` (one entry
per input, in order: BYTES elements each behind a 4-byte little-endian length, as the HTTP
binary extension lays them out) or in the input's typed ``contents`` (``bytes_contents`` for
BYTES). Both become the same ``InputTensor`` with binary data, so the checks of
``app.oip.classifier_model.request_items`` apply unchanged; outputs go back as
``raw_output_contents``, as tritonclient reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tritonclient.grpc import service_pb2

from app.bundle.manifest import Manifest
from app.errors import InvalidTensor, quoted_name
from app.oip.classifier_model import OUTPUTS, model_metadata
from app.oip.codec import InputTensor, OutputTensor
from app.oip.tensors import serialize_bytes

# The typed ``contents`` fields, by the datatypes they carry (to name what was sent).
_TYPED_FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
)
# Parameters of features this server does not have; refused rather than ignored.
_UNSUPPORTED = {
    "shared_memory_region": "shared memory is not supported",
    "classification": "the classification extension is not supported",
}


def input_tensors(request: Any) -> list[InputTensor]:
    """The request's inputs as ``InputTensor``s with binary data; ``InvalidTensor`` for
    framing errors (contents both raw and typed, raw contents not one per input, typed
    contents of another datatype than BYTES)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidTensor(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    tensors = []
    for index, spec in enumerate(request.inputs):
        name = str(spec.name)
        _refuse_unsupported(spec.parameters, f"input {quoted_name(name)}")
        shape = tuple(int(d) for d in spec.shape)
        if any(d < 0 for d in shape):
            raise InvalidTensor(f"input {quoted_name(name)} has a negative dimension {list(shape)}")
        typed = spec.HasField("contents")
        if raw and typed:
            raise InvalidTensor(f"input {quoted_name(name)} has both raw and typed contents")
        if raw:
            data = memoryview(raw[index])
        elif typed:
            data = memoryview(_typed_bytes(name, spec.contents))
        else:
            raise InvalidTensor(f"input {quoted_name(name)} has no contents")
        tensors.append(InputTensor(name, str(spec.datatype), shape, data, None))
    return tensors


def _typed_bytes(name: str, contents: Any) -> bytes:
    others = [field for field in _TYPED_FIELDS if len(getattr(contents, field))]
    if others:
        raise InvalidTensor(
            f"input {quoted_name(name)} has {others[0]}; this model's inputs are BYTES "
            "(bytes_contents)"
        )
    return serialize_bytes(list(contents.bytes_contents))


def _refuse_unsupported(parameters: Any, owner: str) -> None:
    for key, reason in _UNSUPPORTED.items():
        if key in parameters:
            raise InvalidTensor(f"{owner}: {reason}")


def request_priority(request: Any) -> int | None:
    """The request's ``priority`` parameter (Triton's), or None; 400 for another type."""
    if "priority" not in request.parameters:
        return None
    parameter = request.parameters["priority"]
    kind = parameter.WhichOneof("parameter_choice")
    if kind not in ("int64_param", "uint64_param"):
        raise InvalidTensor("the priority parameter must be an integer")
    value = int(getattr(parameter, kind))
    if value < 0:
        raise InvalidTensor("the priority parameter must be 0 or more")
    return value


def requested_outputs(request: Any) -> list[str]:
    """The outputs asked for, in order (all when none is named)."""
    if not request.outputs:
        return list(OUTPUTS)
    names: list[str] = []
    for output in request.outputs:
        name = str(output.name)
        if name not in OUTPUTS:
            raise InvalidTensor(
                f"unknown output {quoted_name(name)}; the model has {', '.join(OUTPUTS)}"
            )
        if name in names:
            raise InvalidTensor(f"output {quoted_name(name)} is requested twice")
        _refuse_unsupported(output.parameters, f"output {quoted_name(name)}")
        names.append(name)
    return names


def infer_response(
    manifest: Manifest, request_id: str, outputs: Sequence[OutputTensor], names: Sequence[str]
) -> Any:
    """The ``ModelInferResponse``: the named outputs, their data as raw contents."""
    by_name = {output.name: output for output in outputs}
    response = service_pb2.ModelInferResponse(
        model_name=manifest.name, model_version=manifest.version, id=request_id
    )
    for name in names:
        output = by_name[name]
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        response.raw_output_contents.append(output.binary_data())
    return response


def metadata_response(manifest: Manifest) -> Any:
    """The ``ModelMetadataResponse`` of the bundle (as the HTTP metadata, without its
    parameters, which the message has no field for)."""
    metadata = model_metadata(manifest)
    response = service_pb2.ModelMetadataResponse(
        name=metadata.name, versions=metadata.versions, platform=metadata.platform
    )
    for tensor in metadata.inputs:
        response.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    for tensor in metadata.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    return response
