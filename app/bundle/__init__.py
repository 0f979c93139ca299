"""Model bundle format: the manifest schema and the validating loader."""

from app.bundle.loader import Bundle, EncoderBundle, load_bundle, load_encoder_bundle
from app.bundle.manifest import MANIFEST_FILENAME, EncodersManifest, Manifest

__all__ = [
    "MANIFEST_FILENAME",
    "Bundle",
    "EncoderBundle",
    "EncodersManifest",
    "Manifest",
    "load_bundle",
    "load_encoder_bundle",
]
