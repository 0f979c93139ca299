"""Whether CUDA really runs here: ONNX Runtime's CUDA provider present *and* a session gets it
(onnxruntime-gpu on a machine without a GPU lists the provider but falls back to the CPU)."""

from __future__ import annotations

import functools

import onnxruntime as ort
from onnx import TensorProto, helper

CUDA = "CUDAExecutionProvider"


@functools.cache
def cuda_available() -> bool:
    if CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=[CUDA])
    except Exception:  # no driver, no device: ONNX Runtime raises its own errors
        return False
    return CUDA in session.get_providers()
