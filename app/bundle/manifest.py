"""Schema of a bundle's ``manifest.json`` (schema version 1).

The manifest is the single source of truth for how a bundle is run: which ONNX files, which
tensor names, and exactly how images and texts are preprocessed. See ``models/README.md``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_FILENAME = "manifest.json"
SCHEMA_VERSION = 1
# Separates the labels of one multilabel item in a dataset's label column.
LABEL_SEPARATOR = "|"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError("must be 64 lowercase hex characters (sha256 of the file)")
    return value


def _check_relative(value: str) -> str:
    if value.startswith("/") or ".." in value.replace("\\", "/").split("/"):
        raise ValueError("must be a path relative to the bundle directory, without '..'")
    return value


Sha256 = Annotated[str, AfterValidator(_check_sha256)]
# A decision threshold: strictly inside (0, 1), so every label can be predicted and none always is.
Threshold = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
RelPath = Annotated[str, AfterValidator(_check_relative)]
TensorName = Annotated[str, Field(min_length=1)]
Modality = Literal["image", "text"]
Task = Literal["multiclass", "multilabel"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Strict):
    file: RelPath
    sha256: Sha256


class ImagePreprocess(_Strict):
    """How raw pixels become the image encoder's input tensor.

    Steps, in order: apply EXIF orientation, convert to ``color_mode``, resize so the short
    side is ``resize_short_side`` (aspect kept), centre-crop ``crop_size`` x ``crop_size``,
    then ``(pixel - mean) / std`` per channel with pixels in 0..255, laid out as ``layout``.
    """

    color_mode: Literal["RGB", "BGR", "L"] = "RGB"
    resize_short_side: int = Field(gt=0, le=4096)
    crop_size: int = Field(gt=0, le=4096)
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    @model_validator(mode="after")
    def _check(self) -> ImagePreprocess:
        if self.crop_size > self.resize_short_side:
            raise ValueError("crop_size must not exceed resize_short_side")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels:
                raise ValueError(
                    f"{name} needs {self.channels} value(s) for color_mode {self.color_mode}"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


class ImageEncoder(FileRef):
    input: TensorName
    output: TensorName
    embedding_dim: int = Field(gt=0)
    preprocess: ImagePreprocess


class TextEncoder(FileRef):
    tokenizer: FileRef
    max_length: int = Field(gt=1, le=8192)
    input_ids: TensorName = "input_ids"
    attention_mask: TensorName | None = "attention_mask"
    token_type_ids: TensorName | None = None
    output: TensorName
    embedding_dim: int = Field(gt=0)


class FusionHead(FileRef):
    """The classifier over the two embeddings.

    A head trained to cope with a missing modality names a presence input for it
    (``image_present`` / ``text_present``: float32 ``[batch, 1]``, 1 when the modality is there,
    0 when not); the service then accepts requests without that modality, feeding zeros as its
    features and 0 as its presence. ``temperature`` divides the logits before the softmax
    (temperature scaling fitted on validation data); it applies to ``logits`` heads only.

    A ``multilabel`` bundle's head gives one independent score per label: its probabilities
    are sigmoids of ``logits / temperature`` (or the head's own ``probabilities``), and each
    label is predicted when its probability is at or above its entry of ``thresholds``.
    """

    image_input: TensorName
    text_input: TensorName
    output: TensorName
    output_type: Literal["logits", "probabilities"] = "logits"
    image_present: TensorName | None = None
    text_present: TensorName | None = None
    temperature: float = Field(default=1.0, gt=0.0, le=100.0, allow_inf_nan=False)
    thresholds: list[Threshold] | None = Field(
        default=None, description="Per label, in label order: multilabel bundles only."
    )

    @model_validator(mode="after")
    def _check(self) -> FusionHead:
        if self.temperature != 1.0 and self.output_type != "logits":
            raise ValueError("temperature applies to output_type 'logits' only")
        names = [self.image_input, self.text_input, self.image_present, self.text_present]
        given = [name for name in names if name is not None]
        if len(set(given)) != len(given):
            raise ValueError("image_input, text_input and the presence inputs must differ")
        return self

    def accepts_missing(self, modality: Modality) -> bool:
        """Whether the head was built to answer without ``modality``."""
        present = self.image_present if modality == "image" else self.text_present
        return present is not None


class Manifest(_Strict):
    schema_version: Literal[1]
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    task: Task = "multiclass"
    labels: list[str] = Field(min_length=2)
    image_encoder: ImageEncoder
    text_encoder: TextEncoder
    fusion_head: FusionHead
    model_card: RelPath | None = None

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        if any(not label.strip() for label in labels):
            raise ValueError("labels must not be blank")
        return labels

    @model_validator(mode="after")
    def _check_task(self) -> Manifest:
        thresholds = self.fusion_head.thresholds
        if self.task == "multiclass" and thresholds is not None:
            raise ValueError("fusion_head.thresholds apply to task 'multilabel' only")
        if self.task == "multilabel":
            if thresholds is None:
                raise ValueError("a multilabel bundle needs fusion_head.thresholds, one per label")
            if len(thresholds) != len(self.labels):
                raise ValueError(
                    f"fusion_head.thresholds has {len(thresholds)} values for "
                    f"{len(self.labels)} labels"
                )
            if any(LABEL_SEPARATOR in label for label in self.labels):
                raise ValueError(
                    f"a multilabel bundle's labels must not contain {LABEL_SEPARATOR!r}, "
                    "which separates labels in datasets and answers"
                )
        return self

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def decision_thresholds(self) -> list[float]:
        """Each label's decision threshold (multilabel bundles; empty for multiclass)."""
        return list(self.fusion_head.thresholds or [])

    def files(self) -> dict[str, FileRef]:
        """Every file the bundle needs, keyed by its manifest field path."""
        return {
            "image_encoder": self.image_encoder,
            "text_encoder": self.text_encoder,
            "text_encoder.tokenizer": self.text_encoder.tokenizer,
            "fusion_head": self.fusion_head,
        }
