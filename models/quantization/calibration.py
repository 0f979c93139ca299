"""Calibration and check inputs for ``quantize-bundle``, made by the service's own preprocessing.

Static quantisation fixes every activation's int8 range from representative inputs, so those
inputs must be exactly what the encoders see when serving: images through the bundle's
``ImageDecoder`` (its manifest's resize, crop and normalisation), texts through the bundle's
request policy (``clean_text``) and ``TextTokenizer``, padded together to a length bucket as a
served batch is (``Pipeline.image_feed`` / ``Pipeline.text_feed``). Rows come from a labelled
dataset (``models.data.dataset``); a seeded sample calibrates and other rows check the result,
and test rows are never used for either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from app.core.classification import ClassifyInput
from app.core.engine import Engine
from app.core.pipeline import Pipeline
from app.errors import RequestError
from models.data.dataset import Dataset, Example

CALIBRATION_SPLITS = ("train", "val", "all")
BATCH = 8  # the service's default max batch size on CPU

Feed = dict[str, np.ndarray]


class CalibrationError(ValueError):
    """Calibration rows that cannot be chosen or preprocessed; the message says which."""


@dataclass(frozen=True)
class Sample:
    """The rows that calibrate and the rows that check the quantised encoders (disjoint)."""

    calibration: tuple[Example, ...]
    check: tuple[Example, ...]
    split: str  # where the calibration rows come from: a split name or "all"
    check_source: str  # where the check rows come from, in words


def _pick(rows: Sequence[Example], count: int, rng: np.random.Generator) -> tuple[Example, ...]:
    """``count`` rows (all if fewer) drawn without replacement, in a seeded order."""
    order = rng.permutation(len(rows))[:count]
    return tuple(rows[i] for i in order)


def choose(dataset: Dataset, split: str, samples: int, check_samples: int, seed: int) -> Sample:
    """Seeded calibration rows from ``split`` (``all``: every row not marked ``test``) and
    check rows: from ``val`` when calibrating elsewhere and the dataset has some, else the
    split's rows left out of the calibration sample."""
    if split not in CALIBRATION_SPLITS:
        raise CalibrationError(f"split must be one of {', '.join(CALIBRATION_SPLITS)}")
    if samples < 1 or check_samples < 0:
        raise CalibrationError("--samples must be at least 1 and --check-samples at least 0")
    rows = (
        tuple(e for e in dataset.examples if e.split != "test")
        if split == "all"
        else dataset.split(split)
    )
    if not rows:
        raise CalibrationError(f"{dataset.path}: no rows in split {split!r} to calibrate on")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    calibration = tuple(rows[i] for i in order[:samples])
    val = dataset.split("val")
    if split != "val" and val:
        check, source = _pick(val, check_samples, rng), "val"
    else:
        rest = order[samples : samples + check_samples]
        check = tuple(rows[i] for i in rest)
        source = f"{split} (rows outside the calibration sample)"
    return Sample(calibration=calibration, check=check, split=split, check_source=source)


def _decode(pipeline: Pipeline, example: Example) -> np.ndarray:
    try:
        return pipeline.decoder(example.image.read_bytes())
    except RequestError as exc:
        raise CalibrationError(
            f"line {example.line}: image {example.image}: {exc.message}"
        ) from None
    except OSError as exc:
        raise CalibrationError(f"line {example.line}: image {example.image}: {exc}") from None


def _tokens(engine: Engine, example: Example) -> np.ndarray:
    try:
        text = engine.policy.check(ClassifyInput(None, example.text)).text
        assert text is not None  # a text in, a cleaned text out
        return engine.pipeline.tokenizer.encode(text)
    except RequestError as exc:
        raise CalibrationError(f"line {example.line}: field 'text': {exc.message}") from None


def image_feeds(pipeline: Pipeline, examples: Sequence[Example], batch: int = BATCH) -> list[Feed]:
    """The image encoder's inputs for ``examples``, in batches, decoded as the service does."""
    return [
        pipeline.image_feed(np.stack([_decode(pipeline, e) for e in examples[i : i + batch]]))
        for i in range(0, len(examples), batch)
    ]


def text_feeds(engine: Engine, examples: Sequence[Example], batch: int = BATCH) -> list[Feed]:
    """The text encoder's inputs for ``examples``' texts, in batches padded as the service
    pads a batch (to the smallest length bucket that fits its longest text)."""
    return [
        engine.pipeline.text_feed([_tokens(engine, e) for e in examples[i : i + batch]])
        for i in range(0, len(examples), batch)
    ]


class FeedReader(CalibrationDataReader):  # type: ignore[misc]
    """Hands ONNX Runtime's calibrator a fixed list of feeds, one per ``get_next`` call."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self.feeds = list(feeds)
        self._next = 0

    def get_next(self) -> Feed | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0
