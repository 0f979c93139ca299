"""The REST adapter's answers: a ``ClassifiedItem`` as the JSON body of ``/classify`` (and of
each item of ``/classify/batch`` and the ``predict`` CLI): labels ranked, cut to ``top_k``,
the explanation's contributions, timings in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel

from app.bundle.manifest import Manifest
from app.core.classification import ClassifiedItem, Timings
from app.rest.rest_schemas import (
    ClassContribution,
    ClassifyResponse,
    Explanation,
    ranked_indices,
)

# Labels explained when the request gives no top_k: these many, and every predicted one.
DEFAULT_EXPLAINED = 3


def classify_response(
    item: ClassifiedItem, manifest: Manifest, top_k: int | None
) -> ClassifyResponse:
    """The body for ``item``, classified by ``manifest``'s bundle; every label ranked when
    ``top_k`` is None. Built as plain values and validated by the model once (a model per
    label would cost several times more)."""
    return ClassifyResponse.model_validate(classify_values(item, manifest, top_k))


def classify_json(item: ClassifiedItem, manifest: Manifest, top_k: int | None) -> bytes:
    """``classify_response``'s JSON, encoded from the plain values without building the
    model: the same bytes (tests/app/rest/test_rest_answers.py), in a third of the time."""
    return orjson.dumps(classify_values(item, manifest, top_k), default=_model_values)


def classify_values(item: ClassifiedItem, manifest: Manifest, top_k: int | None) -> dict[str, Any]:
    """The fields of ``ClassifyResponse`` for ``item``, in its order, as plain values (the
    explanation, when asked for, as its model)."""
    values: list[float] = item.probabilities.tolist()
    labels = manifest.labels
    thresholds = manifest.decision_thresholds()
    predicted = item.predicted(manifest)
    top = item.top
    predictions = [
        {"label": labels[i], "probability": values[i], "threshold": thresholds[i]}
        if thresholds
        else {"label": labels[i], "probability": values[i]}
        for i in ranked_indices(values, top_k)
    ]
    return {
        "task": manifest.task,
        "label": labels[top],
        "probability": values[top],
        "labels": [labels[i] for i in predicted],
        "predictions": predictions,
        "missing_modality": item.missing,
        "explanation": explanation(item, labels, top_k or max(DEFAULT_EXPLAINED, len(predicted))),
        "bundle": {"name": manifest.name, "version": manifest.version},
        "timing": timing(item.timings),
    }


def _model_values(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def timing(timings: Timings) -> dict[str, float]:
    """The answer's ``timing`` (``app.rest.rest_schemas.Timing``): milliseconds."""

    def ms(seconds: float) -> float:
        return round(seconds * 1000.0, 3)

    return {
        "preprocess_ms": ms(timings.preprocess_s),
        "inference_ms": ms(timings.inference_s),
        "total_ms": ms(timings.total_s),
    }


def explanation(
    item: ClassifiedItem, labels: Sequence[str], top_k: int | None
) -> Explanation | None:
    """The explanation of one item's answer, or None if it was not asked for."""
    if item.without_image is None or item.without_text is None:
        return None
    with_both, without_image, without_text = (
        item.probabilities,
        item.without_image,
        item.without_text,
    )

    def contribution(i: int) -> ClassContribution:
        p, p_image, p_text = float(with_both[i]), float(without_image[i]), float(without_text[i])
        return ClassContribution(
            label=labels[i],
            probability=p,
            without_image=p_image,
            without_text=p_text,
            image_contribution=p - p_image,
            text_contribution=p - p_text,
        )

    # The same order as ``rank``: by probability, stable for ties. A multilabel answer's
    # probabilities are per label, so each label's contributions stand on their own.
    order = np.argsort(-with_both, kind="stable")[: top_k or DEFAULT_EXPLAINED]
    top = [contribution(int(i)) for i in order]
    return Explanation(method="null_embedding_ablation", predicted=top[0], top=top)
