"""Parity of the served path with the source's own pipeline, on real inputs.

The *served* path is FusionServe's: the bundle's decoder and tokenizer (``app.preprocess``,
exactly as the service runs them, text cleaned by the request policy's ``clean_text``), then the
exported ONNX graphs through ONNX Runtime. The *reference* is the source's own pipeline on the
same raw input (``ImageSource.reference``: e.g. the transformers processor's PIL backend and the
torch model; ``TextSource.reference``: e.g. sentence-transformers' ``encode``). Reference images
are opened with Pillow and converted with ``convert("RGB")``, as the processors' own
``convert_to_rgb`` does: no EXIF orientation, alpha dropped.

Targets (failing the export, never warning): cosine >= ``EXACT_MIN_COSINE`` for every ``exact``
input and >= ``REDUCED_MIN_COSINE`` for images the service decodes at reduced scale; a refused
``exact`` input fails too. ``departure`` inputs are measured and reported only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from app.core.encoders import Encoders
from app.errors import RequestError
from app.preprocess.downscale import reduction_factor
from app.preprocess.geometry import limiting_sides
from app.preprocess.image import ImageDecoder
from app.preprocess.text import clean_text
from models.encoders.encoder_graphs import Precision, row_cosines
from models.encoders.encoder_sources import ImageSource, TextSource
from models.encoders.parity_inputs import Kind, ParityImage, ParityText
from models.export.export_support import ExportError

EXACT_MIN_COSINE: dict[Precision, float] = {"fp32": 0.9999, "fp16": 0.999}
REDUCED_MIN_COSINE: dict[Precision, float] = {"fp32": 0.98, "fp16": 0.98}
_BATCH = 8
T = TypeVar("T")


@dataclass(frozen=True)
class ParityRow:
    """One input's comparison: its cosine, or why the service refused it."""

    name: str
    kind: Kind
    cosine: float | None
    refused: str | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"input": self.name, "kind": self.kind}
        if self.cosine is not None:
            row["cosine"] = round(self.cosine, 7)
        if self.refused is not None:
            row["refused_by_the_service"] = self.refused
        if self.note:
            row["note"] = self.note
        return row


def reference_image(data: bytes) -> Image.Image:
    """``data`` as the source's own loader sees it: opened, converted to RGB, nothing else."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.convert("RGB")


def _in_batches(embed: Callable[[Sequence[T]], np.ndarray], inputs: Sequence[T]) -> np.ndarray:
    """``embed`` over ``inputs`` in batches of ``_BATCH``, as one float32 array."""
    parts = [
        np.asarray(embed(inputs[i : i + _BATCH]), dtype=np.float32)
        for i in range(0, len(inputs), _BATCH)
    ]
    return np.concatenate(parts)


def served_kind(decoder: ImageDecoder, image: ParityImage) -> Kind:
    """``image``'s kind as this decoder serves it: an ``exact`` image that it decodes at
    reduced scale (a JPEG drafted by libjpeg, or another image reduced band by band, as its
    size relative to the target decides) is ``reduced``."""
    if image.kind != "exact":
        return image.kind
    opened = decoder.open(image.data)
    try:
        drafted = opened.size != opened.header_size
        factor = reduction_factor(*limiting_sides(decoder.spec, opened.size))
    finally:
        opened.close()
    return "reduced" if drafted or (opened.format != "JPEG" and factor > 1) else "exact"


def image_parity(
    encoders: Encoders, source: ImageSource, images: Sequence[ParityImage]
) -> list[ParityRow]:
    """Each image through the served path and through ``source.reference``."""
    pipeline = encoders.pipeline
    served: dict[str, np.ndarray] = {}
    rows: dict[str, ParityRow] = {}
    kinds: dict[str, Kind] = {}
    for image in images:
        try:
            kinds[image.name] = served_kind(pipeline.decoder, image)
            served[image.name] = pipeline.decoder(image.data)
        except RequestError as exc:
            rows[image.name] = ParityRow(image.name, image.kind, None, str(exc), image.note)
    accepted = [image for image in images if image.name in served]
    if accepted:
        ours = _in_batches(
            lambda chunk: pipeline.encode_images(np.stack(chunk)),
            [served[image.name] for image in accepted],
        )
        theirs = _in_batches(source.reference, [reference_image(image.data) for image in accepted])
        for image, cosine in zip(accepted, row_cosines(ours, theirs), strict=True):
            kind = kinds[image.name]
            note = image.note or ("decoded at reduced scale" if kind != image.kind else "")
            rows[image.name] = ParityRow(image.name, kind, float(cosine), None, note)
    return [rows[image.name] for image in images]


def text_parity(
    encoders: Encoders, source: TextSource, texts: Sequence[ParityText]
) -> list[ParityRow]:
    """Each text through the served path (cleaned, tokenised, encoded) and ``source.reference``."""
    pipeline = encoders.pipeline
    tokens: dict[str, np.ndarray] = {}
    rows: dict[str, ParityRow] = {}
    for text in texts:
        try:
            tokens[text.name] = pipeline.tokenizer.encode(
                clean_text(text.text, encoders.max_text_chars)
            )
        except RequestError as exc:
            rows[text.name] = ParityRow(text.name, text.kind, None, str(exc), text.note)
    accepted = [text for text in texts if text.name in tokens]
    if accepted:
        ids = [tokens[text.name] for text in accepted]
        # One text at a time and in a padded batch: padding must not change an embedding.
        alone = np.concatenate([pipeline.encode_texts([one]) for one in ids])
        together = _in_batches(pipeline.encode_texts, ids)
        theirs = _in_batches(source.reference, [text.text for text in accepted])
        cosines = np.minimum(row_cosines(alone, theirs), row_cosines(together, theirs))
        for text, cosine in zip(accepted, cosines, strict=True):
            rows[text.name] = ParityRow(text.name, text.kind, float(cosine), None, text.note)
    return [rows[text.name] for text in texts]


def summary(rows: Sequence[ParityRow], precision: Precision) -> dict[str, Any]:
    """Per kind: the worst cosine and its input, the target, and whether it is met."""
    targets: dict[Kind, float | None] = {
        "exact": EXACT_MIN_COSINE[precision],
        "reduced": REDUCED_MIN_COSINE[precision],
        "departure": None,
    }
    out: dict[str, Any] = {}
    for kind, target in targets.items():
        measured = [row for row in rows if row.kind == kind and row.cosine is not None]
        refused = [row.name for row in rows if row.kind == kind and row.refused is not None]
        if not measured and not refused:
            continue
        worst = min(measured, key=lambda row: row.cosine or 0.0) if measured else None
        entry: dict[str, Any] = {
            "inputs": len(measured) + len(refused),
            "min_cosine": None if worst is None else round(worst.cosine or 0.0, 7),
            "worst_input": None if worst is None else worst.name,
            "refused": refused,
        }
        if target is not None:
            entry["target"] = target
            entry["met"] = not refused and (worst is None or (worst.cosine or 0.0) >= target)
        out[kind] = entry
    return out


def check_summary(encoder: str, report: dict[str, Any]) -> None:
    """Raise ``ExportError`` when a target is missed."""
    for kind, entry in report.items():
        if entry.get("met") is False:
            what = (
                f"refused {', '.join(entry['refused'])}"
                if entry["refused"]
                else f"min cosine {entry['min_cosine']} on {entry['worst_input']!r}"
            )
            raise ExportError(
                f"{encoder}: the served path does not match the source's own pipeline on "
                f"{kind} inputs: {what} (target {entry['target']}); nothing was written"
            )
