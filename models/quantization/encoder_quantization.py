"""Quantise one encoder to int8 with ONNX Runtime's tools (``onnxruntime.quantization``).

Each encoder is first prepared (``prepare``): ``quant_pre_process`` (symbolic shape inference
and ONNX Runtime's basic graph optimisations, which fold constants and the explicit ``Pad``
nodes of TF-style "same" padding into the convolutions), then every graph output the bundle
does not use is dropped with the nodes only it needs (EfficientNet-Lite0's ImageNet
classifier: a quantised graph output would otherwise also put a quantise/dequantise pair on
the features it consumes). Then one of two recipes (measured in ``docs/int8.md``):

* ``static``: QDQ format, int8 weights per output channel, uint8 activations whose ranges come
  from calibration inputs (``models.quantization.calibration``): the recommended set-up for x86
  CPUs with VNNI, run by ONNX Runtime as fused int8 kernels. For the image encoder every operator is
  quantised except the final pooling (the embedding stays float). For a transformer, only
  MatMuls with a constant weight are quantised: quantising every operator of MiniLM
  (softmax, layer norm, GELU, attention products) drops the embeddings' cosine to fp32 to
  about 0.4.
* ``dynamic``: int8 weights per output channel, activation ranges computed per batch at run
  time (``quantize_dynamic``); no calibration. Good for transformers; for convolutions it
  gives ``ConvInteger``, which ONNX Runtime runs slower than fp32.
* ``none``: the encoder is kept as it is (for measuring one encoder's share).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import onnx.utils
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

Mode = Literal["static", "dynamic", "none"]
MODES: tuple[Mode, ...] = ("static", "dynamic", "none")
# Entropy is left out: with ONNX Runtime's default bins (128 histogram bins for 128 quantised
# ones) it has a single candidate range per tensor and writes the same model as minmax.
CALIBRATION_METHODS = {
    "percentile": CalibrationMethod.Percentile,
    "minmax": CalibrationMethod.MinMax,
}


class QuantizeError(ValueError):
    """A quantisation that cannot be done as asked (e.g. an unknown node to exclude)."""


@dataclass(frozen=True)
class Recipe:
    """How one encoder is quantised in static mode: which operators, which left float."""

    op_types: tuple[str, ...] | None = None  # None: every operator ONNX Runtime can quantise
    exclude_op_types: tuple[str, ...] = ()
    extra_options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "op_types": list(self.op_types) if self.op_types is not None else "all",
            "float_op_types": list(self.exclude_op_types),
            "extra_options": dict(self.extra_options),
        }


# The embedding is the pooled output: pooling in float keeps it unquantised, for nothing.
IMAGE_RECIPE = Recipe(exclude_op_types=("GlobalAveragePool", "ReduceMean"))
TEXT_RECIPE = Recipe(op_types=("MatMul",), extra_options={"MatMulConstBOnly": True})


def prepare(source: Path, target: Path, output: str) -> list[str]:
    """Pre-process ``source`` for quantisation into ``target``, keeping only the graph output
    ``output``; returns the names of the outputs dropped."""
    with tempfile.TemporaryDirectory(prefix="fusionserve-quant-") as work:
        processed = Path(work) / "processed.onnx"
        # auto_merge: MiniLM's attention reshapes leave symbolic dimensions to be merged.
        quant_pre_process(str(source), str(processed), auto_merge=True)
        model = onnx.load(str(processed))
        _name_nodes(model.graph)
        outputs = [value.name for value in model.graph.output]
        if output not in outputs:
            raise QuantizeError(f"{source.name} has no output {output!r} (it has {outputs})")
        dropped = [name for name in outputs if name != output]
        if not dropped:
            onnx.save(model, str(target))
            return []
        weights = {init.name for init in model.graph.initializer}
        inputs = [value.name for value in model.graph.input if value.name not in weights]
        onnx.save(model, str(processed))
        onnx.utils.extract_model(str(processed), str(target), inputs, [output])
        # Keep the metadata (quant_pre_process marks the model as pre-processed in it).
        extracted = onnx.load(str(target))
        extracted.metadata_props.extend(model.metadata_props)
        onnx.save(extracted, str(target))
    return dropped


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give every unnamed node a unique name: nodes are excluded from quantisation by name."""
    taken = {node.name for node in graph.node}
    for index, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def node_names(path: Path) -> list[str]:
    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.node]


def nodes_of_types(path: Path, op_types: Iterable[str]) -> list[str]:
    wanted = set(op_types)
    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in wanted]


def quantize(
    prepared: Path,
    target: Path,
    mode: Mode,
    recipe: Recipe,
    *,
    reader: CalibrationDataReader | None = None,
    method: str = "percentile",
    exclude_nodes: Iterable[str] = (),
) -> list[str]:
    """Quantise the prepared model into ``target``; returns the nodes left in float by name
    (the recipe's float operator types and ``exclude_nodes``)."""
    excluded = sorted({*nodes_of_types(prepared, recipe.exclude_op_types), *exclude_nodes})
    if mode == "dynamic":
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
    elif mode == "static":
        if reader is None:
            raise QuantizeError("static quantisation needs calibration inputs")
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types is not None else None,
            nodes_to_exclude=excluded,
            extra_options=dict(recipe.extra_options),
        )
    else:
        raise QuantizeError(f"mode {mode!r} does not quantise")
    return excluded
