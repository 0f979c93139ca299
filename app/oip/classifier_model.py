"""FusionServe's classifier as an Open Inference Protocol model: its tensors and metadata, and
the conversion between tensors and the serving core's items (``app.core.classification``).

Inputs, one element per item (shape ``[N]`` or ``[N, 1]``), both BYTES:

* ``image``: the encoded image file. As binary data, its bytes; in JSON, which cannot carry
  raw bytes, a base64 string (RFC 4648, standard alphabet).
* ``text``: the item's description, UTF-8.

Either may be left out when the bundle's fusion head answers without it; both present must
have the same batch size. Outputs:

* ``probabilities``: FP32 ``[N, labels]``, in the bundle's label order (over the classes of a
  multiclass bundle; each label's own sigmoid for a multilabel one);
* ``label``: BYTES ``[N]``, the most probable label;
* ``labels``: BYTES ``[N]``, the predicted labels joined by ``|``, most probable first: a
  multiclass bundle's one class, a multilabel bundle's labels at or above their thresholds
  (the empty string when none is). A multilabel bundle's labels never contain ``|``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.bundle.manifest import LABEL_SEPARATOR, FusionHead, Manifest, Modality
from app.config.settings import Settings
from app.core.classification import ClassifiedItem, ClassifyInput
from app.errors import (
    FieldTooLarge,
    InvalidTensor,
    PayloadTooLarge,
    RequestError,
    TooManyItems,
    quoted_name,
)
from app.oip.codec import InputTensor, OutputTensor
from app.oip.schemas import MetadataTensor, ModelMetadata
from app.oip.tensors import BYTES, FP32

IMAGE: Modality = "image"
TEXT: Modality = "text"
INPUTS: tuple[Modality, ...] = (IMAGE, TEXT)
PROBABILITIES = "probabilities"
LABEL = "label"
LABELS = "labels"
OUTPUTS = (PROBABILITIES, LABEL, LABELS)
PLATFORM = "fusionserve"


def model_metadata(manifest: Manifest) -> ModelMetadata:
    head = manifest.fusion_head
    return ModelMetadata(
        name=manifest.name,
        versions=[manifest.version],
        platform=PLATFORM,
        inputs=[MetadataTensor(name=name, datatype=BYTES, shape=[-1]) for name in INPUTS],
        outputs=[
            MetadataTensor(name=PROBABILITIES, datatype=FP32, shape=[-1, len(manifest.labels)]),
            MetadataTensor(name=LABEL, datatype=BYTES, shape=[-1]),
            MetadataTensor(name=LABELS, datatype=BYTES, shape=[-1]),
        ],
        parameters={
            "task": manifest.task,
            "labels": list(manifest.labels),
            **({"thresholds": manifest.decision_thresholds()} if manifest.multilabel else {}),
            "optional_inputs": [name for name in INPUTS if head.accepts_missing(name)],
            "description": manifest.description,
        },
    )


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_image_bytes: int
    max_text_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_items=settings.max_items_per_request,
            max_image_bytes=settings.max_image_bytes,
            max_text_bytes=settings.max_text_field_bytes,
        )


def request_items(
    inputs: Sequence[InputTensor], head: FusionHead, limits: Limits
) -> list[ClassifyInput]:
    """One (image, text) item per batch row; ``InvalidTensor`` (400) for a malformed input and
    413 for one over a limit. The texts are checked further (length, characters) when each
    item is prepared, as for /classify."""
    given = _by_name(inputs)
    sizes = {name: _batch_size(tensor) for name, tensor in given.items()}
    for name in INPUTS:
        if name not in given and not head.accepts_missing(name):
            raise InvalidTensor(
                f"input '{name}' is required: this model's fusion head cannot answer without it"
            )
    if len(set(sizes.values())) > 1:
        raise InvalidTensor(
            f"inputs 'image' and 'text' have batch sizes {sizes[IMAGE]} and {sizes[TEXT]}; "
            "they must be equal"
        )
    count = next(iter(sizes.values()))
    if count == 0:
        raise InvalidTensor("the batch is empty: send at least one item")
    if count > limits.max_items:
        raise TooManyItems(f"{count} items; at most {limits.max_items} per request")
    image, text = given.get(IMAGE), given.get(TEXT)
    images = [None] * count if image is None else _images(image, limits.max_image_bytes)
    texts = [None] * count if text is None else _texts(text, limits.max_text_bytes)
    return [ClassifyInput(i, t) for i, t in zip(images, texts, strict=True)]


def _by_name(inputs: Sequence[InputTensor]) -> dict[str, InputTensor]:
    given: dict[str, InputTensor] = {}
    for tensor in inputs:
        if tensor.name not in INPUTS:
            raise InvalidTensor(
                f"unknown input {quoted_name(tensor.name)}; the model takes image, text"
            )
        if tensor.name in given:
            raise InvalidTensor(f"input '{tensor.name}' is given twice")
        given[tensor.name] = tensor
    if not given:
        raise InvalidTensor("the request has no input: send image, text or both")
    return given


def _batch_size(tensor: InputTensor) -> int:
    if tensor.datatype != BYTES:
        raise InvalidTensor(
            f"input '{tensor.name}' must be BYTES, not {quoted_name(tensor.datatype)}"
        )
    if len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1):
        return tensor.shape[0]
    raise InvalidTensor(
        f"input '{tensor.name}' has shape {list(tensor.shape)}; it must be [N] or [N, 1]"
    )


def _images(tensor: InputTensor, limit: int) -> list[bytes | None]:
    if tensor.binary is not None:
        images = tensor.bytes_elements()
    else:
        images = [_base64(i, element, limit) for i, element in enumerate(tensor.json_elements())]
    for i, image in enumerate(images):
        if len(image) > limit:
            raise PayloadTooLarge(f"input 'image' item {i} is over {limit} bytes")
    return list(images)


def _base64(index: int, element: Any, limit: int) -> bytes:
    if not isinstance(element, str):
        raise InvalidTensor(f"input 'image' item {index} must be a base64 string in JSON")
    if len(element) > 4 * (limit // 3 + 1):  # longer than any encoding of `limit` bytes
        raise PayloadTooLarge(f"input 'image' item {index} is over {limit} bytes")
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTensor(f"input 'image' item {index} is not valid base64") from None


def _texts(tensor: InputTensor, limit: int) -> list[str | None]:
    texts: list[str | None] = []
    if tensor.binary is not None:
        for i, data in enumerate(tensor.bytes_elements()):
            _check_text_size(i, len(data), limit)
            try:
                texts.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidTensor(f"input 'text' item {i} is not valid UTF-8") from None
        return texts
    for i, element in enumerate(tensor.json_elements()):
        if not isinstance(element, str):
            raise InvalidTensor(f"input 'text' item {i} must be a string")
        _check_text_size(i, len(element.encode("utf-8", "surrogatepass")), limit)
        texts.append(element)
    return texts


def _check_text_size(index: int, size: int, limit: int) -> None:
    if size > limit:
        raise FieldTooLarge(f"input 'text' item {index} is over {limit} bytes")


def output_tensors(items: Sequence[ClassifiedItem], manifest: Manifest) -> list[OutputTensor]:
    """``probabilities`` (in label order), ``label`` (the most probable) and ``labels`` (the
    predicted ones) of each item."""
    labels = manifest.labels
    probabilities = np.stack([item.probabilities for item in items]).astype(np.float32)
    if probabilities.shape != (len(items), len(labels)):
        raise ValueError(f"probabilities of shape {probabilities.shape} for {len(labels)} labels")
    predicted = [
        LABEL_SEPARATOR.join(labels[i] for i in item.predicted(manifest)) for item in items
    ]
    return [
        OutputTensor.of_fp32(PROBABILITIES, probabilities),
        OutputTensor.of_bytes(LABEL, [labels[item.top].encode("utf-8") for item in items]),
        OutputTensor.of_bytes(LABELS, [names.encode("utf-8") for names in predicted]),
    ]


class ItemFailed(RequestError):
    """An item of a request failed, so the request fails: the protocol has no per-item errors.
    It keeps the item's error code and, for a limit (413) or a server-side failure (5xx), its
    status; any other client error is a 400."""

    KEPT = (PayloadTooLarge.status_code, 429, 499)  # a limit, overload (429), client gone

    def __init__(self, index: int, error: RequestError) -> None:
        super().__init__(f"item {index}: {error.message}", headers=error.headers)
        self.code = error.code
        kept = error.status_code >= 500 or error.status_code in self.KEPT
        self.status_code = error.status_code if kept else InvalidTensor.status_code
