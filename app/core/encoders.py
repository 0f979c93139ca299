"""A bundle's encoders loaded on ONNX Runtime, without its head.

``open_encoders`` creates the encoder sessions, checks them against the manifest and builds
the decoder and tokenizer its preprocessing describes: the part of loading a servable bundle
(``app.core.engine.build_engine``) that a base bundle (encoders, no head) has too.
``build_encoders`` gives the tools that only embed (``train-head``'s features,
``export-encoders``' parity checks) exactly what the service computes, golden inputs checked
(``app.core.golden_check``) as the service checks them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import onnxruntime as ort

from app.bundle import EncoderBundle, load_encoder_bundle
from app.bundle.signature import check_encoder_signatures
from app.config.settings import Settings
from app.core.bound_session import BoundSession
from app.core.encoder_pipeline import EncoderPipeline, Session
from app.core.golden_check import check_golden_inputs
from app.core.runtime import (
    CUDA,
    Providers,
    active_providers,
    create_session,
    requested_providers,
)
from app.core.text_cache import TextEmbeddingCache
from app.preprocess.gpu_decoder_choice import gpu_decoder
from app.preprocess.image import ImageDecoder
from app.preprocess.text import TextTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderParts:
    """The encoder sessions (checked against the manifest), the decoder and the tokenizer."""

    image: ort.InferenceSession
    text: ort.InferenceSession
    decoder: ImageDecoder
    tokenizer: TextTokenizer
    providers: dict[str, list[str]]


def open_encoders(bundle: EncoderBundle, settings: Settings, providers: Providers) -> EncoderParts:
    """Create and check the encoder sessions of ``bundle``; raises ``StartupError``."""
    manifest = bundle.manifest
    image = create_session(bundle.path(manifest.image_encoder.file), settings, providers)
    text = create_session(bundle.path(manifest.text_encoder.file), settings, providers)
    check_encoder_signatures(manifest, image, text)
    active = {"image_encoder": active_providers(image), "text_encoder": active_providers(text)}
    decoder, tokenizer = open_preprocessing(bundle, settings, CUDA in active["image_encoder"])
    return EncoderParts(image, text, decoder, tokenizer, active)


def open_preprocessing(
    bundle: EncoderBundle, settings: Settings, on_cuda: bool = False
) -> tuple[ImageDecoder, TextTokenizer]:
    """The image decoder and the tokenizer ``bundle``'s preprocessing describes, under the
    service's limits (the decoder on the GPU only ``on_cuda``, as ``settings`` allow)."""
    manifest = bundle.manifest
    preprocess = manifest.image_encoder.preprocess
    decoder = ImageDecoder(
        preprocess,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
        max_aspect_ratio=settings.max_image_aspect_ratio,
        jpeg_draft=settings.jpeg_draft,
        gpu=gpu_decoder(settings, preprocess, on_cuda),
    )
    text_spec = manifest.text_encoder
    tokenizer = TextTokenizer(
        bundle.path(text_spec.tokenizer.file),
        text_spec.max_length,
        settings.text_length_buckets,
        padding=text_spec.padding,
        pad_token_id=text_spec.pad_token_id,
        prompt=text_spec.prompt,
        memo_size=settings.text_cache_size,
    )
    return decoder, tokenizer


def bound(session: ort.InferenceSession, settings: Settings) -> Session:
    """``session`` as the pipeline runs it: through IO binding (``settings.io_binding``)."""
    on_cuda = CUDA in active_providers(session)
    if settings.io_binding == "on" or (settings.io_binding == "auto" and on_cuda):
        return BoundSession.on_active_device(session, settings.cuda_device_id)
    plain: Session = session
    return plain


@dataclass(frozen=True)
class Encoders:
    """A bundle's encoders, loaded: a base bundle's, or a servable bundle's without its head."""

    bundle: EncoderBundle
    pipeline: EncoderPipeline
    providers: dict[str, list[str]]
    max_text_chars: int


def build_encoders(settings: Settings) -> Encoders:
    """Load and validate the (base or servable) bundle's encoders and check its golden
    inputs, as the service does; raises ``StartupError``."""
    started = time.perf_counter()
    bundle = load_encoder_bundle(settings.bundle_path, verify_hashes=settings.verify_bundle_hashes)
    parts = open_encoders(bundle, settings, requested_providers(settings))
    pipeline = EncoderPipeline(
        bundle.manifest,
        bound(parts.image, settings),
        bound(parts.text, settings),
        parts.decoder,
        parts.tokenizer,
        TextEmbeddingCache(settings.text_cache_size),
    )
    if settings.verify_golden_inputs:
        check_golden_inputs(bundle, pipeline, parts.providers)
    logger.info(
        "loaded the encoders of %s %s from %s in %.2fs; providers %s",
        bundle.manifest.name,
        bundle.manifest.version,
        bundle.root,
        time.perf_counter() - started,
        parts.providers,
    )
    return Encoders(bundle, pipeline, parts.providers, settings.max_text_chars)
