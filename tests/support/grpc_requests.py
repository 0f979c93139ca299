"""ModelInferRequest messages as a test writes them: typed BYTES contents, one item."""

from __future__ import annotations

from tritonclient.grpc import service_pb2


def typed_infer_request(
    model: str, *, image: bytes | None = None, text: bytes | None = None
) -> service_pb2.ModelInferRequest:
    """One item for ``model`` with the given inputs in ``contents.bytes_contents``."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, value in (("image", image), ("text", text)):
        if value is not None:
            tensor = request.inputs.add(name=name, datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(value)
    return request
