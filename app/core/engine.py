"""Build a ready-to-run pipeline from settings: bundle, sessions, checks, warm-up."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.bundle import Bundle, load_bundle
from app.bundle.manifest import Manifest
from app.bundle.signature import check_signatures
from app.config.settings import Settings
from app.core.classification import ClassifyInput
from app.core.encoder_pipeline import PreparedItem
from app.core.encoders import bound, open_encoders
from app.core.golden_check import check_golden_inputs
from app.core.item_preparer import ItemPreparer
from app.core.pipeline import Pipeline
from app.core.request_policy import RequestPolicy
from app.core.runtime import CUDA, active_providers, create_session, requested_providers
from app.core.text_cache import TextEmbeddingCache
from app.errors import StartupError
from app.preprocess.decode_budget import DecodeBudget
from app.preprocess.geometry import target_side

logger = logging.getLogger(__name__)

WARMUP_TEXT = "warm-up request"


@dataclass(frozen=True)
class Engine:
    """A loaded bundle: its pipeline, the providers each session really uses, and the
    request policy of its head (what a request may ask of it)."""

    bundle: Bundle
    pipeline: Pipeline
    providers: dict[str, list[str]]
    policy: RequestPolicy

    @property
    def max_text_chars(self) -> int:
        """The longest text (after cleaning) a request may send."""
        return self.policy.max_text_chars

    @property
    def preparer(self) -> ItemPreparer:
        """What prepares this engine's items: its policy, decoder and tokenizer."""
        return ItemPreparer(self.policy, self.pipeline.decoder, self.pipeline.tokenizer)

    @property
    def on_cuda(self) -> bool:
        return all(CUDA in p for p in self.providers.values())

    def prepare(
        self,
        image: bytes | None,
        text: str | None,
        explain: bool = False,
        budget: DecodeBudget | None = None,
    ) -> PreparedItem:
        """One item checked by the request policy, then decoded and tokenised: what the
        service does before an item joins a batch (for tools and in-process callers)."""
        item = self.policy.check(ClassifyInput(image, text, explain))
        return self.pipeline.prepare(item.image, item.text, item.explain, budget)


def build_engine(settings: Settings) -> Engine:
    """Load and validate the bundle, create its sessions and check its golden inputs;
    raises ``StartupError``."""
    started = time.perf_counter()
    bundle = load_bundle(settings.bundle_path, verify_hashes=settings.verify_bundle_hashes)
    manifest = bundle.manifest
    providers = requested_providers(settings)
    parts = open_encoders(bundle, settings, providers)
    head = create_session(bundle.path(manifest.fusion_head.file), settings, providers)
    check_signatures(manifest, parts.image, parts.text, head)
    active = parts.providers | {"fusion_head": active_providers(head)}
    pipeline = Pipeline(
        manifest,
        bound(parts.image, settings),
        bound(parts.text, settings),
        bound(head, settings),
        parts.decoder,
        parts.tokenizer,
        TextEmbeddingCache(settings.text_cache_size),
    )
    if settings.verify_golden_inputs:
        check_golden_inputs(bundle, pipeline, active)
    logger.info(
        "loaded bundle %s %s from %s in %.2fs; providers %s",
        manifest.name,
        manifest.version,
        bundle.root,
        time.perf_counter() - started,
        active,
    )
    policy = RequestPolicy(manifest.fusion_head, settings.max_text_chars)
    return Engine(bundle=bundle, pipeline=pipeline, providers=active, policy=policy)


def _warmup_image(size: int) -> bytes:
    gradient = np.linspace(0, 255, size * size * 3, dtype=np.float32).reshape(size, size, 3)
    buffer = io.BytesIO()
    Image.fromarray(gradient.astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def valid_probabilities(probabilities: np.ndarray, manifest: Manifest, rows: int) -> bool:
    """Whether a head's answer for ``rows`` items is a set of probabilities: one per label,
    finite, in [0, 1], and for a multiclass bundle summing to 1 per row."""
    if probabilities.shape != (rows, len(manifest.labels)):
        return False
    if not np.all((probabilities >= 0.0) & (probabilities <= 1.0)):  # NaN fails too
        return False
    return manifest.multilabel or bool(np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3))


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up took (``seconds``), what a full batch of the longest text took to run
    once the arenas had grown (``batch_s``), and what it says one item costs batched
    (``item_s``): decoding its image, plus the batch's run over the batch's size. A seed for
    admission, not a measure of the serving path."""

    seconds: float
    item_s: float
    batch_s: float


def warm_up(engine: Engine, max_batch_size: int = 1) -> WarmUp:
    """Run real inputs through decode, tokenise and all three models.

    Runs a single item and a full batch with the longest padded text, so the first real
    batches do not pay for ONNX Runtime growing its memory arena, then the full batch again,
    timed. Bypasses the text cache.
    """
    started = time.perf_counter()
    pipeline = engine.pipeline
    image = _warmup_image(target_side(pipeline.decoder.spec))
    decoding = time.perf_counter()
    pixels = pipeline.decoder(image)
    decode_s = time.perf_counter() - decoding
    longest = pipeline.tokenizer.encode(" ".join([WARMUP_TEXT] * pipeline.tokenizer.max_length))
    for size, tokens in ((1, pipeline.tokenizer.encode(WARMUP_TEXT)), (max_batch_size, longest)):
        probabilities = pipeline.fuse(
            pipeline.encode_images(np.stack([pixels] * size)),
            pipeline.encode_texts([tokens] * size),
        )
        if not valid_probabilities(probabilities, engine.bundle.manifest, size):
            raise StartupError(
                f"warm-up produced invalid probabilities (shape {probabilities.shape}, NaN, "
                "inf, values outside [0, 1] or, multiclass, rows not summing to 1)"
            )
    batch_s = batch_seconds(engine, max_batch_size)
    item_s = decode_s + batch_s / max_batch_size
    elapsed = time.perf_counter() - started
    logger.info(
        "warm-up passed in %.1f ms (batch sizes 1 and %d); an item costs about %.2f ms batched",
        elapsed * 1000,
        max_batch_size,
        item_s * 1000,
    )
    return WarmUp(elapsed, item_s, batch_s)


def batch_seconds(engine: Engine, size: int) -> float:
    """Seconds to run a batch of ``size`` warm-up items (the longest text) through both
    encoders and the head."""
    pipeline = engine.pipeline
    pixels = pipeline.decoder(_warmup_image(target_side(pipeline.decoder.spec)))
    tokens = pipeline.tokenizer.encode(" ".join([WARMUP_TEXT] * pipeline.tokenizer.max_length))
    started = time.perf_counter()
    pipeline.fuse(
        pipeline.encode_images(np.stack([pixels] * size)), pipeline.encode_texts([tokens] * size)
    )
    return time.perf_counter() - started


def relative_cost(new: Engine, old: Engine, size: int, rounds: int = 2) -> float:
    """What a batch of ``size`` costs ``new`` over what it costs ``old``, timed alternately
    on the same machine in the same moment (under the same load), the least of ``rounds``
    timings each (other work only ever adds to a timing)."""
    new_s, old_s = [], []
    for _ in range(rounds):
        old_s.append(batch_seconds(old, size))
        new_s.append(batch_seconds(new, size))
    return min(new_s) / max(min(old_s), 1e-9)
