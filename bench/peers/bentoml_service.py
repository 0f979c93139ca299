# mypy: ignore-errors
# This module runs in its framework's own venv (bench/.venvs/bentoml); the main venv, where
# mypy runs, does not have the framework, so mypy skips it. Each peer is checked by running
# it instead: bench.peers.peer_benchmark compares its answers with the in-process pipeline's.
"""(e) BentoML 1.4.30 peer: a front service + a batched model service (``bentoml.depends``).

A batchable BentoML API takes one argument (the batch), so the request's two fields cannot
reach it directly. As BentoML's docs compose services, the front service takes the multipart
request (``image`` as a file, ``text``), decodes and tokenises it (BentoML runs sync APIs in a
thread pool) and calls the model service with a one-item list; BentoML's adaptive batcher
(max 16 items) merges concurrent calls into one ``Pipeline.run``. Between the two services'
processes BentoML pickles the prepared arrays.

Run with: bentoml serve bench.peers.bentoml_service:Front --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from app.core.encoder_pipeline import PreparedItem
from bench.peers.common import CLASSIFY_PATH, load_engine, response_body

# FusionServe's per-request deadline is 10 s; the batcher's latency budget is set the same.
MAX_LATENCY_MS = 10_000


def _as_item(value: Any) -> PreparedItem:
    # BentoML validates the pickled input against the API's IO model, which turns the
    # PreparedItem dataclass into a dict of its fields (the arrays themselves are kept).
    if isinstance(value, PreparedItem):
        return value
    return PreparedItem(**{f.name: value[f.name] for f in dataclasses.fields(PreparedItem)})


@bentoml.service(workers=1)
class Model:
    def __init__(self) -> None:
        self.engine = load_engine()

    @bentoml.api(batchable=True, max_batch_size=16, max_latency_ms=MAX_LATENCY_MS)
    def run(self, items: list[Any]) -> list[Any]:
        probabilities: np.ndarray = self.engine.pipeline.run([_as_item(x) for x in items])
        return list(probabilities)


@bentoml.service(workers=1)
class Front:
    model = bentoml.depends(Model)

    def __init__(self) -> None:
        # The decoder and tokenizer come from the same engine build as FusionServe's; the
        # ONNX sessions here stay idle (only the model service runs inference).
        self.engine = load_engine()

    @bentoml.api(route=CLASSIFY_PATH)
    def classify(self, image: Path, text: str) -> dict[str, Any]:
        item: PreparedItem = self.engine.prepare(image.read_bytes(), text)
        (probabilities,) = self.model.run([item])
        return response_body(self.engine, np.asarray(probabilities))
