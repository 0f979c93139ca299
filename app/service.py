"""The classifier service: preprocessing and inference off the event loop, in bounded pools."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from app.engine import Engine
from app.schemas import BundleRef, ClassifyResponse, Timing, rank
from app.settings import Settings


def build_response(
    probabilities: np.ndarray, engine: Engine, top_k: int | None, timing: Timing
) -> ClassifyResponse:
    manifest = engine.bundle.manifest
    predictions = rank(probabilities, manifest.labels, top_k)
    return ClassifyResponse(
        label=predictions[0].label,
        probability=predictions[0].probability,
        predictions=predictions,
        bundle=BundleRef(name=manifest.name, version=manifest.version),
        timing=timing,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class Classifier:
    """Runs requests through an engine. Decode/tokenise and inference use separate pools so
    a slow upload decode never sits in front of model execution."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.default_top_k = settings.default_top_k
        self._preprocess_pool = ThreadPoolExecutor(
            settings.preprocess_threads, thread_name_prefix="fusionserve-preprocess"
        )
        self._inference_pool = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="fusionserve-inference"
        )

    async def classify(self, image: bytes, text: str, top_k: int | None) -> ClassifyResponse:
        loop = asyncio.get_running_loop()
        pipeline = self.engine.pipeline
        started = time.perf_counter()
        item = await loop.run_in_executor(self._preprocess_pool, pipeline.prepare, image, text)
        prepared = time.perf_counter()
        probabilities = await loop.run_in_executor(self._inference_pool, pipeline.run, [item])
        finished = time.perf_counter()
        timing = Timing(
            preprocess_ms=_ms(prepared - started),
            inference_ms=_ms(finished - prepared),
            total_ms=_ms(finished - started),
        )
        return build_response(probabilities[0], self.engine, top_k or self.default_top_k, timing)

    def close(self) -> None:
        """Let running work finish, then release the threads."""
        self._preprocess_pool.shutdown(wait=True)
        self._inference_pool.shutdown(wait=True)
