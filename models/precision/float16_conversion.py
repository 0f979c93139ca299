"""One ONNX model to float16 weights and compute, its float32 interface kept.

ONNX Runtime's own converter (``onnxruntime.transformers.float16``) rewrites every float32
initializer, constant and tensor type to float16, except in the operators of its default block
list and the ones asked for, and with ``keep_io_types`` puts a ``Cast`` at each float graph
input and output: the model still takes and returns float32, so a bundle's manifest and the
service's signature checks are unchanged. ``graph_summary`` reads back what was written: the
interface, the float weights by type and the boundary casts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

FLOAT16_MAX = 65504.0
FLOAT16_MIN_POSITIVE = 5.96e-08  # the smallest subnormal; the converter raises smaller values to it
FLOAT_TYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "float64",
}


class Fp16Error(ValueError):
    """A model that cannot be converted as asked; the message says which and why."""


def _type_name(elem_type: int) -> str:
    return FLOAT_TYPES.get(elem_type) or str(TensorProto.DataType.Name(elem_type)).lower()


def _interface(values: Sequence[onnx.ValueInfoProto]) -> dict[str, str]:
    return {v.name: _type_name(v.type.tensor_type.elem_type) for v in values}


def _weights(model: onnx.ModelProto) -> list[TensorProto]:
    """Initializers and the tensors of ``Constant`` nodes (the converter rewrites both)."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [a.t for a in node.attribute if a.name == "value"]
    return tensors


def graph_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """The interface, the float weights (element counts by type) and the boundary casts."""
    graph = model.graph
    inputs, outputs = _interface(graph.input), _interface(graph.output)
    weights = dict.fromkeys(FLOAT_TYPES.values(), 0)
    for tensor in _weights(model):
        name = FLOAT_TYPES.get(tensor.data_type)
        if name is not None:
            weights[name] += int(np.prod(tensor.dims, dtype=np.int64))
    boundary = [
        node
        for node in graph.node
        if node.op_type == "Cast"
        and (set(node.input) & set(inputs) or set(node.output) & set(outputs))
    ]
    return {
        "inputs": inputs,
        "outputs": outputs,
        "weights": weights,
        "boundary_casts": len(boundary),
        "nodes": len(graph.node),
    }


def out_of_range(model: onnx.ModelProto) -> dict[str, int]:
    """How many float32 weight values float16 cannot hold: too large (clipped to the largest
    float16) or non-zero but too small (raised to the smallest positive float16)."""
    above = below = 0
    for tensor in _weights(model):
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = np.abs(numpy_helper.to_array(tensor))
        above += int((values > FLOAT16_MAX).sum())
        below += int(((values > 0) & (values < FLOAT16_MIN_POSITIVE)).sum())
    return {"above_max": above, "below_min_positive": below}


def node_names(model: onnx.ModelProto) -> set[str]:
    return {node.name for node in model.graph.node}


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Order ``graph``'s nodes so each comes after the producers of its inputs, as the ONNX
    checker requires (the converter appends its output casts at the end of the list)."""
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if set(n.input) <= ready]
        if not runnable:  # inputs from an outer scope, or a cycle: keep the rest as it was
            ordered += pending
            break
        for node in runnable:
            ordered.append(node)
            ready |= set(node.output)
        pending = [n for n in pending if n not in runnable]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def convert(
    source: Path,
    target: Path,
    keep_ops: Sequence[str] = (),
    keep_nodes: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Write ``source`` as float16 to ``target`` (``keep_ops`` op types and ``keep_nodes`` node
    names stay float32, besides the converter's default block list); returns the structure of
    both, read back from the files. A model without float32 weights (a head that computes in
    float64, say) is left alone: ``None``, nothing written."""
    model = onnx.load(str(source))
    before = graph_summary(model)
    if before["weights"]["float32"] == 0:
        return None
    clipped = out_of_range(model)
    nodes = [name for name in keep_nodes if name in node_names(model)]
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, *keep_ops],
        node_block_list=nodes or None,
    )
    sort_nodes(converted.graph)
    onnx.save(converted, str(target))
    after = graph_summary(onnx.load(str(target)))
    for side in ("inputs", "outputs"):
        if after[side] != before[side]:
            raise Fp16Error(
                f"{source.name}: the converted model's {side} {after[side]} differ from the "
                f"source's {before[side]}"
            )
    return {
        "interface": {"inputs": after["inputs"], "outputs": after["outputs"]},
        "weights_before": before["weights"],
        "weights_after": after["weights"],
        "boundary_casts": after["boundary_casts"],
        "out_of_range": clipped,
        "float32_nodes": nodes,
        "float32_op_types": sorted(set(keep_ops)),
    }
