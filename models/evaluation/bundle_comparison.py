"""A derived bundle (int8, fp16) against its source on held-out rows, through the service's code.

Both bundles embed the same rows with their own encoders and preprocessing
(``models.data.features``) and fuse them with their own heads (``Pipeline.fuse``: the
probabilities the service returns), so the numbers are those a client would see change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.engine import Engine
from models.data.dataset import Dataset, Example
from models.data.features import FeatureExtractor


def cosine_summary(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean, 1st percentile and minimum of the row-wise cosine of ``a`` and ``b``."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cosine = (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)
    return {
        "mean": round(float(cosine.mean()), 6),
        "p1": round(float(np.percentile(cosine, 1)), 6),
        "min": round(float(cosine.min()), 6),
    }


def held_out_rows(dataset: Dataset, count: int, seed: int) -> tuple[tuple[Example, ...], str]:
    """Up to ``count`` seeded rows from ``val`` (else from every row not marked ``test``) and
    where they came from, in words: test rows are never used to check a conversion."""
    val = dataset.split("val")
    rows = val or tuple(e for e in dataset.examples if e.split != "test")
    source = "val" if val else "all rows not marked test"
    order = np.random.default_rng(seed).permutation(len(rows))[:count]
    return tuple(rows[i] for i in order), source


def compare(
    source: Engine,
    derived: Engine,
    rows: Sequence[Example],
    rows_source: str,
    progress: bool,
) -> dict[str, Any]:
    """Embeddings and fused probabilities of both bundles on ``rows``, as served."""
    before = FeatureExtractor(source, None, progress=progress).extract(rows)
    after = FeatureExtractor(derived, None, progress=progress).extract(rows)
    p_before = source.pipeline.fuse(before.image, before.text)
    p_after = derived.pipeline.fuse(after.image, after.text)
    return {
        "rows": len(rows),
        "source": rows_source,
        "image_cosine": cosine_summary(before.image, after.image),
        "text_cosine": cosine_summary(before.text, after.text),
        "fused_top1_agreement": round(float((p_before.argmax(1) == p_after.argmax(1)).mean()), 6),
        "fused_max_abs_probability_diff": round(float(np.abs(p_before - p_after).max()), 6),
    }
