"""Model bundle format: the manifest schema and the validating loader."""

from app.bundle.loader import Bundle, load_bundle
from app.bundle.manifest import MANIFEST_FILENAME, Manifest

__all__ = ["MANIFEST_FILENAME", "Bundle", "Manifest", "load_bundle"]
