"""What the serving core takes and gives, whatever the protocol: validated inputs in,
probabilities in the bundle's label order out (over the classes for a multiclass bundle, per
label for a multilabel one), and which labels they predict. Ranking and JSON belong to the
REST adapter (``app.rest.rest_answers``), tensors to the Open Inference Protocol's (``app.oip``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.bundle.manifest import Manifest, Modality
from app.errors import RequestError


@dataclass(frozen=True)
class ClassifyInput:
    """One item as a protocol adapter received it: either modality may be absent. The
    request policy (``app.core.request_policy``) checks it against the bundle."""

    image: bytes | None
    text: str | None
    explain: bool = False


@dataclass(frozen=True)
class Timings:
    """Seconds one item spent being decoded and tokenised, then queued and run."""

    preprocess_s: float
    inference_s: float

    @property
    def total_s(self) -> float:
        return self.preprocess_s + self.inference_s


@dataclass(frozen=True)
class ClassifiedItem:
    """One item's answer. ``probabilities`` in the bundle's label order; for an item that
    asked to be explained, also the probabilities with the image, then the text, left out
    (the head re-run on the same features with that modality's null embedding)."""

    probabilities: np.ndarray
    missing: Modality | None
    timings: Timings
    without_image: np.ndarray | None = None
    without_text: np.ndarray | None = None

    @functools.cached_property
    def top(self) -> int:
        """The index of the most probable label (the first of equals)."""
        return int(np.argmax(self.probabilities))

    def predicted(self, manifest: Manifest) -> list[int]:
        """The indices of the labels this answer predicts: ``predicted_indices``, computed
        once per manifest (the runner's metrics and the adapter's answer both ask)."""
        known = self.__dict__.get("_predicted")
        if known is None or known[0] is not manifest:
            known = (manifest, tuple(predicted_indices(self.probabilities, manifest)))
            self.__dict__["_predicted"] = known  # frozen: a cache, as cached_property's
        return list(known[1])


def predicted_indices(probabilities: np.ndarray, manifest: Manifest) -> list[int]:
    """The predicted labels' indices, most probable first (stable for ties): for a multiclass
    bundle the one most probable class; for a multilabel bundle every label whose probability
    is at or above its threshold, possibly none."""
    if not manifest.multilabel:
        return [int(np.argmax(probabilities))]  # the first of equals, as the stable order's
    order = np.argsort(-probabilities, kind="stable")
    thresholds = manifest.decision_thresholds()
    return [int(i) for i in order if probabilities[i] >= thresholds[i]]


@dataclass(frozen=True)
class ClassifyResult:
    """The answer to a request: the bundle that gave it and one outcome per item, in order:
    its classification, or the error that item alone met."""

    manifest: Manifest
    items: Sequence[ClassifiedItem | RequestError]

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    def single(self) -> ClassifiedItem:
        """The answer of a one-item request; its error, raised, if it failed."""
        (outcome,) = self.items
        if isinstance(outcome, RequestError):
            raise outcome
        return outcome
