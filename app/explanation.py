"""The ``explanation`` of a response: each modality's contribution, from ``ItemResult``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.pipeline import ItemResult
from app.rest_schemas import ClassContribution, Explanation

# Classes explained when the request gives no top_k.
DEFAULT_EXPLAINED = 3


def explain(result: ItemResult, labels: Sequence[str], top_k: int | None) -> Explanation | None:
    """The explanation of one item's result, or None if it was not asked for."""
    if result.without_image is None or result.without_text is None:
        return None
    with_both, without_image, without_text = (
        result.probabilities,
        result.without_image,
        result.without_text,
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

    # The same order as ``rank``: by probability, stable for ties.
    order = np.argsort(-with_both, kind="stable")[: top_k or DEFAULT_EXPLAINED]
    top = [contribution(int(i)) for i in order]
    return Explanation(method="null_embedding_ablation", predicted=top[0], top=top)
