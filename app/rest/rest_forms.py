"""The REST classification forms, one pydantic model each: the one description of their
fields, which the routes parse with and document (``app/rest/forms.py``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.rest.forms import FilePart

EXPLAIN = (
    "Also return `explanation`: how much the image and the text each moved the predicted "
    "class and the top classes (the fusion head re-run with each modality left out; the "
    "encoders do not run again). Needs both modalities and a head that accepts either "
    "missing (422 explain_unsupported otherwise)."
)
MODEL = (
    "The bundle to classify with, by name (GET /v1/models lists them); the default bundle "
    "when left out."
)
TOP_K = "Return only the k most probable classes."
PRIORITY = (
    "1 (the most urgent) to FUSIONSERVE_PRIORITY_LEVELS; 0 or left out: "
    "FUSIONSERVE_DEFAULT_PRIORITY. More urgent requests are batched first and, under "
    "overload, less urgent ones are refused first (422 invalid_request out of range)."
)


class ClassifyForm(BaseModel):
    """The multipart form of ``POST /classify``."""

    image: FilePart | None = Field(
        default=None,
        description=(
            "The image (JPEG, PNG, WebP, BMP, GIF, TIFF). May be left out if the bundle's "
            "head accepts text alone (422 modality_required otherwise)."
        ),
    )
    text: str | None = Field(
        default=None,
        description=(
            "A text description of the item. May be left out if the bundle's head accepts "
            "an image alone (422 modality_required otherwise)."
        ),
    )
    top_k: int | None = Field(default=None, ge=1, description=TOP_K)
    explain: bool = Field(default=False, description=EXPLAIN)
    model: str | None = Field(default=None, description=MODEL)
    priority: int | None = Field(default=None, ge=0, description=PRIORITY)


class ClassifyBatchForm(BaseModel):
    """The multipart form of ``POST /classify/batch``."""

    images: list[FilePart] = Field(description="One file per item, in order.")
    texts: list[str] = Field(description="One description per item, in order.")
    top_k: int | None = Field(default=None, ge=1, description=TOP_K)
    explain: bool = Field(default=False, description=EXPLAIN + " Applies to every item.")
    model: str | None = Field(default=None, description=MODEL)
    priority: int | None = Field(default=None, ge=0, description=PRIORITY)
