"""Schema of a bundle's ``manifest.json`` (schema versions 1 and 2).

The manifest is the single source of truth for how a bundle is run: which ONNX files, which
tensor names, and exactly how images and texts are preprocessed. See ``models/README.md``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

MANIFEST_FILENAME = "manifest.json"
SCHEMA_VERSION = 2  # the version the tools write
SUPPORTED_SCHEMA_VERSIONS = (1, 2)  # the versions the loader reads
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
# How close (cosine) a golden input's embedding must come to the one stored with the bundle.
MinCosine = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
DEFAULT_MIN_COSINE = 0.9999
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


Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]


class ImagePreprocess(_Strict):
    """How raw pixels become the image encoder's input tensor.

    Steps, in order: apply EXIF orientation, convert to ``color_mode`` (transparency composited
    on white), resize with Pillow's ``interpolation`` on 8-bit pixels, centre-crop, multiply by
    ``rescale_factor``, then ``(pixel - mean) / std`` per channel, laid out as ``layout``.

    ``resize`` is ``short_side`` (aspect kept: the short side becomes ``resize_short_side``, or
    ``floor(crop_size / crop_pct)`` when ``crop_pct`` is given instead, the long side scaled and
    rounded by ``long_side_rounding``) or ``exact`` (``resize_height`` x ``resize_width``, the
    aspect not kept). The centre crop is ``crop_size`` square, its offset rounded by
    ``crop_offset_rounding``; ``exact`` resizes may have no crop. Every field past schema
    version 1's (resize_short_side, crop_size, interpolation of the first four, mean and std in
    0..255) has the default that gives version 1's behaviour.
    """

    color_mode: Literal["RGB", "BGR", "L"] = "RGB"
    resize: Literal["short_side", "exact"] = "short_side"
    resize_short_side: int | None = Field(default=None, gt=0, le=4096)
    crop_pct: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    resize_height: int | None = Field(default=None, gt=0, le=4096)
    resize_width: int | None = Field(default=None, gt=0, le=4096)
    crop_size: int | None = Field(default=None, gt=0, le=4096)
    long_side_rounding: Literal["floor", "round"] = "floor"
    crop_offset_rounding: Literal["round", "floor"] = "round"
    interpolation: Interpolation = "bilinear"
    rescale_factor: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    @property
    def short_side(self) -> int:
        """The resized short side (``short_side`` resizes only)."""
        if self.resize_short_side is not None:
            return self.resize_short_side
        if self.crop_pct is None or self.crop_size is None:
            raise ValueError("not a short_side resize")
        return math.floor(self.crop_size / self.crop_pct)

    @property
    def output_size(self) -> tuple[int, int]:
        """The tensor's (height, width)."""
        if self.crop_size is not None:
            return self.crop_size, self.crop_size
        if self.resize_height is None or self.resize_width is None:
            raise ValueError("neither a crop nor an exact resize")
        return self.resize_height, self.resize_width

    def version_2_fields(self) -> list[str]:
        """The fields set away from version 1's behaviour (they need schema version 2)."""
        defaults = {
            "resize": "short_side",
            "crop_pct": None,
            "resize_height": None,
            "resize_width": None,
            "long_side_rounding": "floor",
            "crop_offset_rounding": "round",
            "rescale_factor": 1.0,
        }
        changed = [name for name, value in defaults.items() if getattr(self, name) != value]
        if self.interpolation in ("box", "hamming"):
            changed.append("interpolation")
        return changed

    @model_validator(mode="after")
    def _check(self) -> ImagePreprocess:
        if self.resize == "short_side":
            self._check_short_side()
        else:
            self._check_exact()
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels:
                raise ValueError(
                    f"{name} needs {self.channels} value(s) for color_mode {self.color_mode}"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self

    def _check_short_side(self) -> None:
        if self.resize_height is not None or self.resize_width is not None:
            raise ValueError("resize_height and resize_width apply to resize 'exact' only")
        if self.crop_size is None:
            raise ValueError("a short_side resize needs crop_size (the tensor has a fixed size)")
        if (self.resize_short_side is None) == (self.crop_pct is None):
            raise ValueError("a short_side resize needs one of resize_short_side and crop_pct")
        if self.crop_size > self.short_side:
            raise ValueError(
                f"crop_size must not exceed the resized short side ({self.short_side})"
            )

    def _check_exact(self) -> None:
        if self.resize_height is None or self.resize_width is None:
            raise ValueError("an exact resize needs resize_height and resize_width")
        if self.resize_short_side is not None or self.crop_pct is not None:
            raise ValueError("resize_short_side and crop_pct apply to resize 'short_side' only")
        if self.crop_size is not None and self.crop_size > min(
            self.resize_height, self.resize_width
        ):
            raise ValueError("crop_size must not exceed resize_height or resize_width")


class ImageEncoder(FileRef):
    input: TensorName
    output: TensorName
    embedding_dim: int = Field(gt=0)
    preprocess: ImagePreprocess


class TextEncoder(FileRef):
    """The text model and how texts become its inputs.

    The service prepends ``prompt`` to each (cleaned) text, tokenises it with ``tokenizer``
    (truncated to ``max_length`` tokens) and pads a batch with ``pad_token_id`` (by default the
    tokenizer file's own padding id, else ``[PAD]``'s, else 0) to its longest text
    (``padding: longest``, to a length bucket) or always to ``max_length`` (``max_length``:
    for graphs that take no attention mask and pool a fixed position, as SigLIP's).
    """

    tokenizer: FileRef
    max_length: int = Field(gt=1, le=8192)
    input_ids: TensorName = "input_ids"
    attention_mask: TensorName | None = "attention_mask"
    token_type_ids: TensorName | None = None
    output: TensorName
    embedding_dim: int = Field(gt=0)
    padding: Literal["longest", "max_length"] = "longest"
    pad_token_id: int | None = Field(default=None, ge=0)
    prompt: str = Field(default="", max_length=1024)

    def version_2_fields(self) -> list[str]:
        """The fields set away from version 1's behaviour (they need schema version 2)."""
        defaults: dict[str, object] = {"padding": "longest", "pad_token_id": None, "prompt": ""}
        return [name for name, value in defaults.items() if getattr(self, name) != value]


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


class GoldenInputs(FileRef):
    """The bundle's golden inputs: a few images and texts with the embeddings the encoders
    gave them where the bundle was exported (``golden.json``, read by
    ``app.bundle.golden_inputs``). The service embeds them again when it loads the bundle and
    refuses it if any embedding's cosine to the stored one is under ``min_cosine``: a
    different ONNX Runtime, Pillow or libjpeg build would otherwise change answers silently."""

    min_cosine: MinCosine = DEFAULT_MIN_COSINE


class EncodersManifest(_Strict):
    """The encoders of a bundle and how inputs reach them: all a *base bundle* has (what
    ``fusionserve export-encoders`` writes, for ``train-head --base-bundle``), and the part of
    every servable bundle that a head is trained on. Version 2 adds fields to the encoders'
    preprocessing (exact and ``crop_pct`` resizes, rounding conventions, rescaling, fixed
    padding, pad id, prompt) and the golden inputs checked at load (``golden``); every version
    1 manifest reads as before, and a version 1 manifest that sets a version 2 field is
    refused, naming it."""

    schema_version: Literal[1, 2]
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    image_encoder: ImageEncoder
    text_encoder: TextEncoder
    model_card: RelPath | None = None
    golden: GoldenInputs | None = None

    @field_validator("image_encoder")
    @classmethod
    def _check_image_version(cls, encoder: ImageEncoder, info: ValidationInfo) -> ImageEncoder:
        _require_version_2(info, "preprocess", encoder.preprocess.version_2_fields())
        return encoder

    @field_validator("text_encoder")
    @classmethod
    def _check_text_version(cls, encoder: TextEncoder, info: ValidationInfo) -> TextEncoder:
        _require_version_2(info, "", encoder.version_2_fields())
        return encoder

    @field_validator("golden")
    @classmethod
    def _check_golden_version(
        cls, golden: GoldenInputs | None, info: ValidationInfo
    ) -> GoldenInputs | None:
        _require_version_2(info, "", [] if golden is None else ["golden"])
        return golden

    def encoder_files(self) -> dict[str, FileRef]:
        """The encoders' files (models, tokenizer and golden inputs, if any), keyed by their
        manifest field path: what a bundle trained on these encoders carries over."""
        files: dict[str, FileRef] = {
            "image_encoder": self.image_encoder,
            "text_encoder": self.text_encoder,
            "text_encoder.tokenizer": self.text_encoder.tokenizer,
        }
        if self.golden is not None:
            files["golden"] = self.golden
        return files

    def files(self) -> dict[str, FileRef]:
        """Every file the bundle needs, keyed by its manifest field path."""
        return self.encoder_files()


class Manifest(EncodersManifest):
    """A servable bundle's manifest: the encoders, the fusion head and its labels."""

    task: Task = "multiclass"
    labels: list[str] = Field(min_length=2)
    fusion_head: FusionHead

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
        return self.encoder_files() | {"fusion_head": self.fusion_head}


def _require_version_2(info: ValidationInfo, prefix: str, fields: list[str]) -> None:
    if fields and info.data.get("schema_version") == 1:
        named = ", ".join(f"{prefix}.{name}" if prefix else name for name in fields)
        raise ValueError(f"{named} need(s) schema_version 2")
