"""Response bodies, shared by the HTTP API and the ``predict`` CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field


class LabelProbability(BaseModel):
    label: str
    probability: float


class BundleRef(BaseModel):
    name: str
    version: str


class Timing(BaseModel):
    preprocess_ms: float = Field(description="Image decode + tokenisation.")
    inference_ms: float = Field(
        description="Waiting for a batch slot plus running the encoders and fusion head."
    )
    total_ms: float

    @classmethod
    def between(cls, started: float, prepared: float, finished: float) -> Timing:
        """From three ``time.perf_counter()`` marks, in milliseconds."""

        def ms(seconds: float) -> float:
            return round(seconds * 1000.0, 3)

        return cls(
            preprocess_ms=ms(prepared - started),
            inference_ms=ms(finished - prepared),
            total_ms=ms(finished - started),
        )


class ClassifyResponse(BaseModel):
    label: str = Field(description="The most probable class.")
    probability: float = Field(description="Its probability.")
    predictions: list[LabelProbability] = Field(
        description="Classes sorted by probability, highest first (all, or the top_k)."
    )
    missing_modality: Literal["image", "text"] | None = Field(
        default=None,
        description=(
            "The modality the request did not send (the head answered without it), or null "
            "when both were sent."
        ),
    )
    bundle: BundleRef
    timing: Timing


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    request_id: str | None = Field(
        default=None,
        description="The request's id, as in the X-Request-ID response header: quote it.",
    )


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    result: ClassifyResponse | None = None
    error: ErrorDetail | None = Field(
        default=None, description="Why this item failed; the other items are unaffected."
    )


class BatchClassifyResponse(BaseModel):
    results: list[BatchItemResult]


class ErrorResponse(BaseModel):
    error: ErrorDetail


class LiveResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    ready: bool
    providers: dict[str, list[str]] = Field(default_factory=dict)
    device: str | None = None
    detail: str | None = None


def rank(
    probabilities: np.ndarray, labels: Sequence[str], top_k: int | None
) -> list[LabelProbability]:
    """Labels sorted by probability (stable for ties), cut to ``top_k`` when given."""
    order = np.argsort(-probabilities, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [LabelProbability(label=labels[i], probability=float(probabilities[i])) for i in order]
