"""Response bodies, shared by the HTTP API and the ``predict`` CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field


class LabelProbability(BaseModel):
    label: str
    probability: float
    threshold: float | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A multilabel bundle's decision threshold for this label (the label is "
        "predicted when its probability is at or above it); absent for multiclass bundles.",
    )


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
    task: Literal["multiclass", "multilabel"] = Field(
        default="multiclass",
        description="multiclass: one class per item, probabilities over the classes summing "
        "to 1. multilabel: any number of labels per item, each label's probability on its own "
        "(a sigmoid) and its own decision threshold.",
    )
    label: str = Field(
        description="The most probable label. For a multilabel bundle it may be under its "
        "threshold: `labels` holds the decision."
    )
    probability: float = Field(description="Its probability.")
    labels: list[str] = Field(
        description="The predicted labels, most probable first: a multiclass bundle's one "
        "class (`label`); a multilabel bundle's labels at or above their thresholds, possibly "
        "none. Never cut by top_k."
    )
    predictions: list[LabelProbability] = Field(
        description="Labels sorted by probability, highest first (all, or the top_k); for a "
        "multilabel bundle each with its threshold."
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
    task: Literal["multiclass", "multilabel"] | None = Field(
        default=None, description="One label per item, or any number (null until loaded)."
    )
    thresholds: list[float] | None = Field(
        default=None,
        description="A multilabel bundle's decision threshold per label, in label order.",
    )
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
    probabilities: np.ndarray,
    labels: Sequence[str],
    top_k: int | None,
    thresholds: Sequence[float] = (),
) -> list[LabelProbability]:
    """Labels sorted by probability (stable for ties), cut to ``top_k`` when given; each with
    its threshold when ``thresholds`` (one per label, multilabel) are given."""
    values: list[float] = probabilities.tolist()
    return [
        LabelProbability(
            label=labels[i],
            probability=values[i],
            threshold=thresholds[i] if thresholds else None,
        )
        for i in ranked_indices(values, top_k)
    ]


def ranked_indices(values: Sequence[float], top_k: int | None = None) -> list[int]:
    """The indices of ``values``, highest value first (stable for ties: the first of equals
    first), cut to ``top_k`` when given."""
    order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
    return order if top_k is None else order[:top_k]
