"""What ``export-encoders`` needs from a checkpoint, whatever library it comes from.

A source is a torch module to export, the preprocessing the service must apply to reach that
module's input exactly as the checkpoint's own pipeline does, and that pipeline itself (the
*reference*), which the parity check runs on the same raw inputs as the served path. The
loaders (``hf_image_source``, ``text_sources``) build sources from local files; the Python API
takes a source built by hand (EfficientNet-Lite0 in the default recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from app.bundle.manifest import ImagePreprocess

if TYPE_CHECKING:
    from torch import nn

# Raw images (as decoded by Pillow, before any conversion) -> float32 [n, dim] embeddings.
ImageReference = Callable[[Sequence[Image.Image]], np.ndarray]
# Raw strings -> float32 [n, dim] embeddings.
TextReference = Callable[[Sequence[str]], np.ndarray]


class SourceError(ValueError):
    """A checkpoint cannot be exported: a file is missing, or the source does something the
    manifest cannot express (``field`` and ``value`` name it). Never approximated."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


def inexpressible(field: str, value: object, why: str) -> SourceError:
    """The error for a source setting the manifest cannot express."""
    return SourceError(
        f"{field}={value!r} cannot be expressed in a FusionServe manifest: {why}; "
        "refused rather than approximated",
        field=field,
        value=value,
    )


@dataclass(frozen=True)
class ImageSource:
    """An image encoder: ``module`` maps float32 ``pixel_values`` [n, 3, h, w] (already
    preprocessed as ``preprocess`` says) to float32 embeddings [n, embedding_dim]."""

    family: str
    module: nn.Module
    preprocess: ImagePreprocess
    embedding_dim: int
    reference: ImageReference
    reference_name: str
    # What the reference itself would do differently from its default (e.g. its torchvision
    # backend), as {name: reference}; the parity report measures each against the served path.
    alternatives: dict[str, ImageReference] = field(default_factory=dict)
    input_name: str = "pixel_values"
    output_name: str = "image_embedding"
    # Further graph outputs (e.g. a classifier's logits kept for checks): the module then
    # returns a tuple, the embedding first.
    extra_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextSource:
    """A text encoder: ``module`` maps int64 ``input_ids`` (and, when ``takes_attention_mask``,
    int64 ``attention_mask``), both [n, sequence], to float32 embeddings [n, embedding_dim],
    pooling, Dense layers and normalisation included.

    ``tokenizer_json`` is the serialised ``tokenizers`` tokenizer the service runs (the
    source's normalisation, such as lower-casing, baked in); ``prompt`` is prepended to every
    text; ``padding`` and ``pad_token_id`` are as the manifest's ``text_encoder``."""

    family: str
    module: nn.Module
    tokenizer_json: str
    max_length: int
    embedding_dim: int
    reference: TextReference
    reference_name: str
    takes_attention_mask: bool = True
    padding: Literal["longest", "max_length"] = "longest"
    pad_token_id: int | None = None
    prompt: str = ""
    input_ids_name: str = "input_ids"
    attention_mask_name: str = "attention_mask"
    output_name: str = "text_embedding"
