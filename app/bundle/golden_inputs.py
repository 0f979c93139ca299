"""A bundle's golden inputs file (``golden.json``): images and texts with their embeddings.

The file the manifest's ``golden`` entry names holds a few encoded images (PNG or JPEG files,
base64) and texts, each with the embedding the bundle's encoder gave it where the bundle was
exported. ``app.core.golden_check`` embeds them again through the served path when the bundle
is loaded and compares. Errors name the offending entry as ``golden.<path in the file>``
(``golden.images.0.embedding``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from app.bundle.loader import EncoderBundle
from app.bundle.manifest import EncodersManifest
from app.errors import BundleError

GOLDEN_MAX_BYTES = 8 * 1024 * 1024  # the whole file: a few small images and embeddings
MAX_GOLDEN_ITEMS = 32  # images, and texts, each
MAX_GOLDEN_TEXT_CHARS = 2048
MAX_EMBEDDING_DIM = 65_536

# An image's name is quoted in error messages: a plain short name.
GoldenName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Embedding = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(min_length=1, max_length=MAX_EMBEDDING_DIM),
]
ToolVersion = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_dim(embedding: list[float], info: ValidationInfo, key: str, encoder: str) -> None:
    """With a validation context (the manifest's dimensions), the embedding must have the
    encoder's ``embedding_dim`` values."""
    expected = info.context.get(key) if isinstance(info.context, dict) else None
    if expected is not None and len(embedding) != expected:
        raise ValueError(
            f"has {len(embedding)} values; the {encoder}'s embedding_dim is {expected}"
        )


class GoldenImage(_Strict):
    """An encoded image file (PNG or JPEG bytes, base64) and its embedding."""

    name: GoldenName
    data_base64: str = Field(min_length=1, max_length=GOLDEN_MAX_BYTES)
    embedding: Embedding

    @field_validator("data_base64")
    @classmethod
    def _check_base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64") from None
        return value

    @field_validator("embedding")
    @classmethod
    def _check_embedding(cls, embedding: list[float], info: ValidationInfo) -> list[float]:
        _check_dim(embedding, info, "image_dim", "image encoder")
        return embedding

    def data(self) -> bytes:
        """The image file's bytes."""
        return base64.b64decode(self.data_base64, validate=True)


class GoldenText(_Strict):
    """A text (as a client would send it) and its embedding."""

    text: str = Field(min_length=1, max_length=MAX_GOLDEN_TEXT_CHARS)
    embedding: Embedding

    @field_validator("embedding")
    @classmethod
    def _check_embedding(cls, embedding: list[float], info: ValidationInfo) -> list[float]:
        _check_dim(embedding, info, "text_dim", "text encoder")
        return embedding

    def label(self) -> str:
        """The text, shortened for a message (it is the bundle's, never a client's)."""
        return repr(self.text if len(self.text) <= 40 else self.text[:37] + "...")


class GoldenFile(_Strict):
    """The contents of ``golden.json``: at least one image and one text, and the versions of
    the libraries that computed the embeddings (``exported_with``, for the error that says
    they drifted)."""

    images: list[GoldenImage] = Field(min_length=1, max_length=MAX_GOLDEN_ITEMS)
    texts: list[GoldenText] = Field(min_length=1, max_length=MAX_GOLDEN_ITEMS)
    exported_with: dict[ToolVersion, ToolVersion] = Field(default_factory=dict, max_length=16)

    @field_validator("images")
    @classmethod
    def _check_names(cls, images: list[GoldenImage]) -> list[GoldenImage]:
        names = [image.name for image in images]
        if len(set(names)) != len(names):
            raise ValueError("images must have unique names")
        return images


def dimensions(manifest: EncodersManifest) -> dict[str, int]:
    """The validation context that checks embeddings against ``manifest``'s encoders."""
    return {
        "image_dim": manifest.image_encoder.embedding_dim,
        "text_dim": manifest.text_encoder.embedding_dim,
    }


def parse_golden(data: bytes, context: dict[str, int] | None = None) -> GoldenFile:
    """Parse golden inputs (JSON bytes); with ``context`` (``dimensions``), embeddings are
    checked against the encoders. Raises ``BundleError`` naming the entry at fault."""
    if len(data) > GOLDEN_MAX_BYTES:
        raise BundleError(
            "golden.file", f"is {len(data)} bytes; golden inputs are at most {GOLDEN_MAX_BYTES}"
        )
    try:
        return GoldenFile.model_validate_json(data, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        field = f"golden.{location}" if location else "golden.file"
        raise BundleError(field, first["msg"]) from None


def read_golden(bundle: EncoderBundle) -> GoldenFile | None:
    """``bundle``'s golden inputs, checked against its encoders; ``None`` if it has none."""
    ref = bundle.manifest.golden
    if ref is None:
        return None
    path = bundle.path(ref.file)
    try:
        size = path.stat().st_size
        if size > GOLDEN_MAX_BYTES:
            raise BundleError(
                "golden.file",
                f"{ref.file} is {size} bytes; golden inputs are at most {GOLDEN_MAX_BYTES}",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError("golden.file", f"{ref.file} cannot be read: {exc}") from None
    return parse_golden(data, dimensions(bundle.manifest))
