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


class ClassContribution(BaseModel):
    label: str
    probability: float = Field(description="Its probability with both the image and the text.")
    without_image: float = Field(
        description="Its probability with the image replaced by the head's null embedding."
    )
    without_text: float = Field(
        description="Its probability with the text replaced by the head's null embedding."
    )
    image_contribution: float = Field(
        description="probability - without_image: how much the image raised (or, negative, "
        "lowered) this class."
    )
    text_contribution: float = Field(
        description="probability - without_text: how much the text raised or lowered it."
    )


class Explanation(BaseModel):
    method: Literal["null_embedding_ablation"] = Field(
        description=(
            "How the contributions were computed: the fusion head re-run on the same features "
            "with one modality replaced by the null embedding it learned for a missing one "
            "(the answer a request without that modality gets); the encoders do not run again."
        )
    )
    predicted: ClassContribution = Field(description="The predicted class (``label``).")
    top: list[ClassContribution] = Field(
        description="The most probable classes, highest first: top_k of them, or 3."
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
    explanation: Explanation | None = Field(
        default=None,
        description="How much the image and the text each moved the prediction; null unless "
        "the request asked for it (explain=true).",
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
    providers: dict[str, list[str]] = Field(
        default_factory=dict, description="The default bundle's sessions and their providers."
    )
    device: str | None = None
    detail: str | None = None
    models: dict[str, str] = Field(
        default_factory=dict, description="Each served bundle's status (loading, ready, failed)."
    )


class ModelInfo(BaseModel):
    name: str = Field(description="The bundle's manifest name; send it as `model`.")
    version: str | None = Field(description="The version now serving; null until loaded.")
    status: Literal["loading", "ready", "failed", "unloaded"]
    ready: bool
    default: bool = Field(description="Answers requests that name no model.")
    path: str
    labels: list[str]
    accepts_image_only: bool
    accepts_text_only: bool
    explain: bool = Field(description="Whether explain=true can be answered.")
    reloads: int = Field(description="Successful reloads since start-up.")
    draining: int = Field(
        description="Previous versions still answering requests they took before a reload."
    )
    error: str | None = Field(default=None, description="Why loading failed.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class ReloadResponse(BaseModel):
    name: str
    previous_version: str
    version: str
    load_ms: float = Field(description="Loading and warming up the new version.")
    draining: int = Field(
        description="Requests the previous version was still answering at the switch; it "
        "stops once they are answered."
    )
    workers: int = Field(default=1, description="Worker processes in this replica.")
    workers_reloaded: int = Field(
        default=1,
        description="Worker processes serving the new version when this answer was sent (all "
        "of them unless some were still loading it after the wait).",
    )


def rank(
    probabilities: np.ndarray, labels: Sequence[str], top_k: int | None
) -> list[LabelProbability]:
    """Labels sorted by probability (stable for ties), cut to ``top_k`` when given."""
    order = np.argsort(-probabilities, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [LabelProbability(label=labels[i], probability=float(probabilities[i])) for i in order]
