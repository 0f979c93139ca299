"""One output row of a scoring job: an answered row's columns, computed by the REST answer's
own function (``app.rest.rest_answers.classify_response``: label, probability, the predicted
labels at the manifest's thresholds, the ranking), or a failed row's stage, code and
message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.bundle.manifest import Manifest, Modality
from app.core.classification import ClassifiedItem, Timings
from app.core.pipeline import ItemResult
from app.rest.rest_answers import classify_response

# "prepare": a row whose reading, decoding and tokenising outlasted its deadline.
STAGES = ("read", "validate", "decode", "tokenise", "prepare", "model")
_NO_TIME = Timings(0.0, 0.0)


@dataclass(frozen=True)
class RowError:
    """Why a row has no answer: the stage it failed at (one of ``STAGES``) and the error code
    and message the service would answer."""

    stage: str
    code: str
    message: str


@dataclass(frozen=True)
class AnswerColumns:
    """Which ranking columns a job writes: ``top_k`` ranked predictions, or with
    ``all_probabilities`` every label's probability in the manifest's order."""

    top_k: int
    all_probabilities: bool


def answer_record(
    row_id: str,
    result: ItemResult,
    missing: Modality | None,
    manifest: Manifest,
    columns: AnswerColumns,
) -> dict[str, Any]:
    """The output row of an answered input row."""
    item = ClassifiedItem(result.probabilities, missing, _NO_TIME)
    response = classify_response(item, manifest, columns.top_k)
    record: dict[str, Any] = {
        "id": row_id,
        "status": "ok",
        "label": response.label,
        "probability": response.probability,
        "labels": list(response.labels),
    }
    if columns.all_probabilities:
        record["probabilities"] = [float(p) for p in result.probabilities.tolist()]
    else:
        record["top_k"] = [
            {"label": p.label, "probability": p.probability} for p in response.predictions
        ]
    return record


def error_record(row_id: str, error: RowError) -> dict[str, Any]:
    """The output row of an input row that failed."""
    return {
        "id": row_id,
        "status": "error",
        "error_stage": error.stage,
        "error_code": error.code,
        "error_message": error.message,
    }
