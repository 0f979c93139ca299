"""gRPC inference requests as a test writes them: tritonclient's ``InferInput``s for a batch,
and ModelInferRequest messages with typed BYTES contents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import InferInput, service_pb2


def triton_inputs(
    images: Sequence[bytes] | None, texts: Sequence[str] | Sequence[bytes] | None
) -> list[InferInput]:
    """The ``image`` and ``text`` BYTES inputs of a batch; a modality that is None is left out."""
    inputs = []
    for name, values in (("image", images), ("text", texts)):
        if values is None:
            continue
        array = np.array(list(values), dtype=np.object_)
        tensor = InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


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
