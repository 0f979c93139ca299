"""The sizing rule: the most resident memory one FusionServe process can hold, from its
settings and the measured warmed-up RSS.

The terms, each bounded by a setting or by a measurement:

- the warmed-up RSS of the default bundle (models, ONNX Runtime arenas after a warm-up at
  the largest batch), as measured by ``python -m bench.memory.decode_memory``
  (bench/results/decode-memory.json; tests/e2e/test_decode_memory.py checks a live server
  against it);
- the text-embedding cache when full: ``text_cache_size`` entries of at most 4 KiB each
  (a 384-float embedding, its key and the cache's bookkeeping; bench/results/soak.json
  measured +36.5 MB while 10,000 entries filled);
- image decodes in progress: ``decode_memory_mb`` (each decode reserves its estimated peak);
- items accepted and decoded, waiting for their batch: ``max_in_flight`` of them at most,
  each holding its image tensor (float32, the default bundle's crop; ``QUEUED_ITEM_BYTES``)
  and its token ids (``max_length`` int64s, twice: ids and mask);
- request bodies held: ``body_memory_mb`` (reserved at the gate before a body is read), each
  byte in memory up to ``BODY_COPIES`` times: an Open Inference Protocol JSON body as
  received in chunks and joined (both, for a moment), its base64 text parsed, and decoded
  (tests/e2e/test_decode_memory.py measured 3.25 times the bodies held). A multipart upload
  takes two: the part as spooled (in memory under 1 MB; over it in /tmp, which is memory
  too when /tmp is a tmpfs or an emptyDir of medium Memory) and the bytes read from it. So
  spooled uploads are counted, whatever /tmp is, and never need more than JSON bodies do;
- on a GPU, host memory taken by the CUDA libraries and context (not measured here: no GPU;
  the 2 GiB upper figure NVIDIA's and ONNX Runtime's users report).

A memory limit must cover their sum plus ``MARGIN`` (allocator fragmentation across threads,
Python objects per request, what no budget counts). With several worker processes
(``workers``, app/workers/worker_pool.py) each worker is a whole process with its own models, cache,
budgets and CUDA context, so those terms count once per worker; ``max_in_flight`` is the
pod's, divided between the workers, so the items waiting count once.

tests/deploy checks deploy/'s limits against this rule (through tests/support/memory_sizing.py)
and ``bench.memory.memory_doc`` shows it summed in docs/operations.md: one rule for both.
"""

from __future__ import annotations

from app.config.settings import Settings
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS

MiB = 2**20
TEXT_CACHE_ENTRY_BYTES = 4096
BODY_COPIES = 4
CUDA_HOST_BYTES = 2 * 2**30
MARGIN = 1.10
_ROWS, _COLUMNS = EFFICIENTNET_LITE_PREPROCESS.output_size
TEXT_MAX_LENGTH = 128  # the default bundle's text encoder (minilm_export.MAX_LENGTH in its recipe)
QUEUED_ITEM_BYTES = 3 * _ROWS * _COLUMNS * 4 + 2 * TEXT_MAX_LENGTH * 8


def worst_case_terms(
    warm_rss_bytes: int, settings: Settings, *, cuda: bool, workers: int = 1
) -> dict[str, int]:
    """Each term of the worst case, in bytes, for a pod of ``workers`` processes."""
    per_worker = {
        "warmed-up process": warm_rss_bytes,
        "text cache": settings.text_cache_size * TEXT_CACHE_ENTRY_BYTES,
        "image decodes": settings.decode_memory_mb * MiB,
        "request bodies and spooled uploads": BODY_COPIES * settings.body_memory_mb * MiB,
    }
    if cuda:
        per_worker["CUDA host memory"] = CUDA_HOST_BYTES
    terms = {name: workers * value for name, value in per_worker.items()}
    terms["items waiting for a batch"] = settings.max_in_flight * QUEUED_ITEM_BYTES
    order = ["warmed-up process", "text cache", "image decodes", "items waiting for a batch"]
    return {name: terms[name] for name in [*order, *(n for n in terms if n not in order)]}


def needed_limit_bytes(terms: dict[str, int]) -> int:
    """The memory limit the terms need: their sum plus ``MARGIN``."""
    return int(sum(terms.values()) * MARGIN)
