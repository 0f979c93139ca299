"""The golden inputs check: a bundle's stored inputs embedded again, as the service would.

A bundle with golden inputs (the manifest's ``golden``, ``app.bundle.golden_inputs``) keeps a
few images and texts with the embeddings its encoders gave them where it was exported. When the
bundle is loaded (``app.core.engine.build_engine``, ``app.core.encoders.build_encoders``) they
go through the served path (the decoder, the text cleaning and tokenizer, the encoders, one
batch per modality) and each embedding is compared with the stored one by cosine: under the
manifest's ``min_cosine``, the load fails, since this machine's ONNX Runtime, Pillow, libjpeg
or device answers differently from the one the bundle was exported on. The export tools
compute what they store with the same function (``golden_embeddings``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime
import PIL
from PIL import features

from app.bundle.golden_inputs import MAX_GOLDEN_TEXT_CHARS, GoldenFile, read_golden
from app.bundle.loader import EncoderBundle
from app.core.encoder_pipeline import EncoderPipeline
from app.errors import BundleError, RequestError
from app.preprocess.text import clean_text

logger = logging.getLogger(__name__)


def runtime_versions() -> dict[str, str]:
    """The versions of the libraries that decide an embedding's exact values here."""
    jpeg = features.version("libjpeg_turbo")
    return {
        "onnxruntime": onnxruntime.__version__,
        "Pillow": PIL.__version__,
        "libjpeg-turbo" if jpeg else "libjpeg": jpeg or features.version("jpg") or "none",
        "numpy": np.__version__,
    }


def golden_embeddings(
    pipeline: EncoderPipeline, images: Sequence[bytes], texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of ``images`` (encoded files) and ``texts`` through the served path: each
    image decoded by the bundle's decoder, each text cleaned and tokenised, then all images in
    one batch and all texts in another. An input the service would refuse raises
    ``BundleError`` naming it (``golden.images.<i>`` / ``golden.texts.<i>``)."""
    pixels = []
    for index, data in enumerate(images):
        try:
            pixels.append(pipeline.decoder(data))
        except RequestError as exc:
            raise BundleError(
                f"golden.images.{index}", f"the service refuses this image: {exc.message}"
            ) from None
    tokens = []
    for index, text in enumerate(texts):
        try:
            tokens.append(pipeline.tokenizer.encode(clean_text(text, MAX_GOLDEN_TEXT_CHARS)))
        except RequestError as exc:
            raise BundleError(
                f"golden.texts.{index}", f"the service refuses this text: {exc.message}"
            ) from None
    return pipeline.encode_images(np.stack(pixels)), pipeline.encode_texts(tokens)


def cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Row by row, the cosine of ``actual`` and ``expected`` (float64): 1 where both rows are
    zero, 0 where only one is, NaN where ``actual`` has a NaN."""
    a = np.asarray(actual, dtype=np.float64).reshape(len(actual), -1)
    e = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1)
    dots = np.sum(a * e, axis=1)
    zero_a, zero_e = ~np.any(a, axis=1), ~np.any(e, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    result = np.where(zero_a & zero_e, 1.0, result)
    return np.where(np.isnan(dots), np.nan, result)


@dataclass(frozen=True)
class GoldenResult:
    """What a passed check compared: how many inputs, the lowest cosine, how long it took."""

    images: int
    texts: int
    lowest_cosine: float
    seconds: float


@dataclass(frozen=True)
class _Drift:
    field: str
    what: str
    cosine: float


def check_golden_inputs(
    bundle: EncoderBundle,
    pipeline: EncoderPipeline,
    providers: Mapping[str, list[str]] | None = None,
) -> GoldenResult | None:
    """Embed ``bundle``'s golden inputs with ``pipeline`` (the bundle's, sessions bound) and
    compare with the stored embeddings; ``None`` for a bundle without golden inputs. Raises
    ``BundleError`` naming each input under the manifest's ``min_cosine``, its cosine, and the
    versions in use here and where the bundle was exported (``providers``: the sessions'
    active providers, for the message)."""
    ref = bundle.manifest.golden
    golden = read_golden(bundle)
    if ref is None or golden is None:  # both or neither
        return None
    started = time.perf_counter()
    image_embeddings, text_embeddings = golden_embeddings(
        pipeline, [image.data() for image in golden.images], [text.text for text in golden.texts]
    )
    image_cos = _compared("images", image_embeddings, [i.embedding for i in golden.images])
    text_cos = _compared("texts", text_embeddings, [t.embedding for t in golden.texts])
    drifts = [
        _Drift(f"golden.images.{i}", f"image '{image.name}'", float(cos))
        for i, (image, cos) in enumerate(zip(golden.images, image_cos, strict=True))
        if not cos >= ref.min_cosine  # NaN drifts too
    ] + [
        _Drift(f"golden.texts.{i}", f"text {i} ({text.label()})", float(cos))
        for i, (text, cos) in enumerate(zip(golden.texts, text_cos, strict=True))
        if not cos >= ref.min_cosine
    ]
    if drifts:
        raise BundleError(
            drifts[0].field, _drift_message(drifts, ref.min_cosine, golden, providers)
        )
    result = GoldenResult(
        images=len(golden.images),
        texts=len(golden.texts),
        lowest_cosine=float(min(image_cos.min(), text_cos.min())),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "golden inputs of %s match (%d images, %d texts; lowest cosine %.6f, min_cosine %s) "
        "in %.1f ms",
        bundle.manifest.name,
        result.images,
        result.texts,
        result.lowest_cosine,
        ref.min_cosine,
        result.seconds * 1000,
    )
    return result


def _compared(section: str, actual: np.ndarray, stored: list[list[float]]) -> np.ndarray:
    expected = np.array(stored, dtype=np.float64)
    if actual.shape != expected.shape:  # an encoder whose output width is not fixed
        raise BundleError(
            f"golden.{section}",
            f"the encoder gives embeddings of shape {actual.shape}, golden.json stores "
            f"{expected.shape}",
        )
    return cosines(actual, expected)


def _versions(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items()) or "not recorded"


def _drift_message(
    drifts: Sequence[_Drift],
    min_cosine: float,
    golden: GoldenFile,
    providers: Mapping[str, list[str]] | None,
) -> str:
    inputs = "; ".join(f"{d.what} has cosine {d.cosine:.8g}" for d in drifts)
    where = ""
    if providers:
        where = "; providers " + ", ".join(f"{k} {'/'.join(v)}" for k, v in providers.items())
    return (
        f"{len(drifts)} golden input(s) embed differently from the embeddings stored with the "
        f"bundle, below its min_cosine {min_cosine}: {inputs}. The bundle answers differently "
        f"here than where it was exported (here: {_versions(runtime_versions())}{where}; "
        f"exported with: {_versions(golden.exported_with)}). Serve it with the versions it "
        "was exported with, or export it again here if these answers are the right ones."
    )
