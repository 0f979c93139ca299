"""Load a bundle directory: parse the manifest, check that every file exists and matches its hash.

Tensor names and shapes are checked against the ONNX Runtime sessions once they exist
(``app.bundle.signature``), so each model file is parsed only once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.bundle.manifest import MANIFEST_FILENAME, Manifest
from app.errors import BundleError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its directory and its manifest."""

    root: Path
    manifest: Manifest

    def path(self, relative: str) -> Path:
        return self.root / relative


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "manifest"


def parse_manifest(path: Path) -> Manifest:
    """Parse and schema-check one manifest file; errors name the offending field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError("manifest", f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError("manifest", f"{path} is not readable JSON: {exc}") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BundleError(_field_path(first["loc"]), first["msg"]) from None


def read_manifest(root: str | Path) -> tuple[Path, Manifest]:
    """The bundle directory ``root`` (resolved) and its parsed manifest; files not checked."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise BundleError("bundle_path", f"{root_path} is not a directory")
    return root_path, parse_manifest(root_path / MANIFEST_FILENAME)


def load_bundle(root: str | Path, *, verify_hashes: bool = True) -> Bundle:
    """Validate the bundle at ``root`` (manifest, files, sha256) and return it."""
    root_path, manifest = read_manifest(root)
    for field, ref in manifest.files().items():
        file_path = root_path / ref.file
        if not file_path.is_file():
            raise BundleError(f"{field}.file", f"{ref.file} does not exist in {root_path}")
        if verify_hashes:
            actual = sha256_file(file_path)
            if actual != ref.sha256:
                raise BundleError(
                    f"{field}.sha256",
                    f"{ref.file} has sha256 {actual}, manifest says {ref.sha256}",
                )
    if manifest.model_card is not None and not (root_path / manifest.model_card).is_file():
        raise BundleError("model_card", f"{manifest.model_card} does not exist in {root_path}")
    return Bundle(root=root_path, manifest=manifest)
