"""Running a bundle's head over extracted features as the service runs it, in chunks, with a
modality left out on request: what ``evaluate`` scores for multiclass and multilabel bundles
alike (a module of its own so that neither task's sections import the other's)."""

from __future__ import annotations

import numpy as np

from app.bundle.manifest import Modality
from app.core.pipeline import Pipeline
from models.data.features import Features

HEAD_CHUNK = 4096
# (key, title, image present, text present, modality the head must do without)
ABLATION: tuple[tuple[str, str, bool, bool, Modality | None], ...] = (
    ("fused", "Fused (image + text)", True, True, None),
    ("image_only", "Image only", True, False, "text"),
    ("text_only", "Text only", False, True, "image"),
)
NOT_SUPPORTED = "not supported by this head"


def head_outputs(
    pipeline: Pipeline,
    features: Features,
    image_present: bool = True,
    text_present: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's raw output and the served probabilities, in chunks, as the service computes
    them: a missing modality gets zero features and a 0 presence flag (``Pipeline.run``)."""
    scores, probabilities = [], []
    for start in range(0, len(features), HEAD_CHUNK):
        chunk = features.take(np.arange(start, min(start + HEAD_CHUNK, len(features))))
        rows = len(chunk)
        image = chunk.image if image_present else np.zeros_like(chunk.image)
        text = chunk.text if text_present else np.zeros_like(chunk.text)
        raw = pipeline.head_scores(
            image, text, np.full(rows, image_present), np.full(rows, text_present)
        )
        scores.append(raw)
        probabilities.append(pipeline.probabilities(raw))
    return np.concatenate(scores), np.concatenate(probabilities)
