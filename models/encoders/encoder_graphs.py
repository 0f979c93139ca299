"""An encoder source's torch module written as an ONNX graph, checked against torch.

Both graphs have a dynamic batch axis, text graphs a dynamic sequence axis too. The check
compares ONNX Runtime with torch on the same tensors (the classic exporter check: batch 1, 2 and
7, padded token batches) and fails the export rather than warning; that the *inputs* are right
is the parity check's business (``encoder_parity``). ``--precision fp16`` converts the written
graph with ``models.precision.float16_conversion`` (float32 interface kept) and is then checked
against torch with the looser fp16 tolerance.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models.encoders.encoder_sources import ImageSource, TextSource
from models.export.export_support import (
    OPSET,
    ExportError,
    cpu_session,
    legacy_exporter_warnings_silenced,
)
from models.precision import float16_conversion

Precision = Literal["fp32", "fp16"]
# Cosine between ONNX Runtime's and torch's embeddings on the same tensors.
MIN_GRAPH_COSINE: dict[Precision, float] = {"fp32": 0.99999, "fp16": 0.999}
CHECK_BATCHES = (1, 2, 7)


@dataclass(frozen=True)
class GraphCheck:
    """How an exported graph compares with torch on the same tensors."""

    min_cosine: float
    max_abs_diff: float
    batches: tuple[int, ...]
    seconds: float
    bytes: int

    def as_json(self) -> dict[str, object]:
        return {
            "min_cosine": round(self.min_cosine, 8),
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "batches": list(self.batches),
            "export_seconds": round(self.seconds, 2),
            "bytes": self.bytes,
        }


def row_cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Each row's cosine similarity (float64); two zero rows count as equal (1.0)."""
    a = actual.astype(np.float64).reshape(len(actual), -1)
    b = expected.astype(np.float64).reshape(len(expected), -1)
    if a.shape != b.shape:
        raise ExportError(f"embedding shapes differ: {a.shape} against {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cosines)


def _image_batches(source: ImageSource) -> list[np.ndarray]:
    height, width = source.preprocess.output_size
    rng = np.random.default_rng(0)
    # Normalised pixels are roughly standard normal; the tensors need not be images here.
    return [
        rng.standard_normal((n, source.preprocess.channels, height, width)).astype(np.float32)
        for n in CHECK_BATCHES
    ]


def _token_batches(source: TextSource) -> list[dict[str, np.ndarray]]:
    """Random ids in batches of 1, 2 and 7 with rows of different lengths (padded rows)."""
    rng = np.random.default_rng(0)
    vocab = _vocab_size(source)
    batches = []
    for n in CHECK_BATCHES:
        length = min(source.max_length, 16)
        ids = rng.integers(5, vocab, size=(n, length), dtype=np.int64)
        mask = np.ones((n, length), dtype=np.int64)
        if source.takes_attention_mask:
            for row in range(1, n):
                mask[row, length - row % length :] = 0
            ids = np.where(mask == 1, ids, source.pad_token_id or 0)
        batch = {source.input_ids_name: ids}
        if source.takes_attention_mask:
            batch[source.attention_mask_name] = mask
        batches.append(batch)
    return batches


def _vocab_size(source: TextSource) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_str(source.tokenizer_json).get_vocab_size())


def _torch_outputs(module: torch.nn.Module, feeds: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(f) for f in feeds))
    outputs = out if isinstance(out, tuple) else (out,)
    return [np.asarray(o.detach().numpy(), dtype=np.float32) for o in outputs]


def _export(
    module: torch.nn.Module,
    sample: list[np.ndarray],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    module.eval()
    with legacy_exporter_warnings_silenced(), warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(s) for s in sample),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={**axes, **{name: {0: "batch"} for name in outputs}},
        )


@dataclass(frozen=True)
class _WrittenGraph:
    """A graph written to ``path`` from ``module``, and the tensors it is checked on."""

    path: Path
    module: torch.nn.Module
    batches: list[list[np.ndarray]]
    names: list[str]
    outputs: list[str]


def _check(graph: _WrittenGraph, precision: Precision) -> tuple[float, float]:
    """The worst row cosine and absolute difference over every output and batch."""
    path, outputs = graph.path, graph.outputs
    session = cpu_session(path)
    worst_cosine, worst_diff = 1.0, 0.0
    for feeds in graph.batches:
        expected = _torch_outputs(graph.module, feeds)
        actual = session.run(outputs, dict(zip(graph.names, feeds, strict=True)))
        for ours, theirs in zip(actual, expected, strict=True):
            cosines = row_cosines(np.asarray(ours), theirs)
            worst_cosine = min(worst_cosine, float(cosines.min()))
            worst_diff = max(worst_diff, float(np.max(np.abs(np.asarray(ours) - theirs))))
    if not worst_cosine >= MIN_GRAPH_COSINE[precision]:  # NaN fails too
        raise ExportError(
            f"{path.name}: ONNX Runtime against torch on the same tensors: cosine "
            f"{worst_cosine:.6f} < {MIN_GRAPH_COSINE[precision]} ({precision})"
        )
    return worst_cosine, worst_diff


def _finish(graph: _WrittenGraph, precision: Precision, started: float) -> GraphCheck:
    """Check the fp32 graph, convert it to fp16 if asked and check that too."""
    path = graph.path
    _check(graph, "fp32")
    if precision == "fp16":
        fp32 = path.with_name(path.name + ".fp32")
        path.rename(fp32)
        try:
            if float16_conversion.convert(fp32, path) is None:
                fp32.rename(path)
        finally:
            fp32.unlink(missing_ok=True)
    cosine, diff = _check(graph, precision)
    return GraphCheck(
        cosine, diff, CHECK_BATCHES, time.perf_counter() - started, path.stat().st_size
    )


def export_image_graph(source: ImageSource, path: Path, precision: Precision) -> GraphCheck:
    """Write ``source``'s module to ``path`` and check it against torch."""
    started = time.perf_counter()
    batches = [[b] for b in _image_batches(source)]
    names = [source.input_name]
    outputs = [source.output_name, *source.extra_outputs]
    _export(source.module, batches[1], path, names, outputs, {names[0]: {0: "batch"}})
    graph = _WrittenGraph(path, source.module, batches, names, outputs)
    return _finish(graph, precision, started)


def export_text_graph(source: TextSource, path: Path, precision: Precision) -> GraphCheck:
    """Write ``source``'s module (pooling, Dense and normalisation inside) to ``path`` and check
    it against torch."""
    started = time.perf_counter()
    token_batches = _token_batches(source)
    names = list(token_batches[0])
    batches = [[batch[name] for name in names] for batch in token_batches]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    outputs = [source.output_name]
    _export(source.module, batches[1], path, names, outputs, axes)
    return _finish(_WrittenGraph(path, source.module, batches, names, outputs), precision, started)
