"""Load a bundle directory: parse the manifest, check that every file exists and matches its hash.

Tensor names and shapes are checked against the ONNX Runtime sessions once they exist
(``app.bundle.signature``), so each model file is parsed only once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from app.bundle.manifest import MANIFEST_FILENAME, EncodersManifest, Manifest
from app.errors import BundleError

_CHUNK = 1 << 20
ManifestT = TypeVar("ManifestT", bound=EncodersManifest)


@dataclass(frozen=True)
class EncoderBundle:
    """A validated bundle's directory and manifest, of which only the encoders are used:
    a base bundle (encoders only) or a servable one."""

    root: Path
    manifest: EncodersManifest

    def path(self, relative: str) -> Path:
        return self.root / relative


@dataclass(frozen=True)
class Bundle(EncoderBundle):
    """A validated servable bundle: its directory and its manifest."""

    manifest: Manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "manifest"


def parse_manifest(path: Path) -> Manifest:
    """Parse and schema-check one servable bundle's manifest; errors name the offending
    field. A base bundle's (encoders, no head) is refused with what to do about it."""
    raw = _read_json(path)
    if isinstance(raw, dict) and "fusion_head" not in raw and "labels" not in raw:
        _validate(EncodersManifest, raw)  # its own errors first
        raise BundleError(
            "fusion_head",
            "this is a base bundle (encoders without a fusion head), which cannot be served; "
            "train a head on it: fusionserve train-head --base-bundle DIR",
        )
    return _validate(Manifest, raw)


def parse_encoders_manifest(path: Path) -> EncodersManifest:
    """Parse and schema-check a base bundle's manifest, or a servable bundle's in full."""
    raw = _read_json(path)
    if isinstance(raw, dict) and "fusion_head" not in raw and "labels" not in raw:
        return _validate(EncodersManifest, raw)
    return _validate(Manifest, raw)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError("manifest", f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError("manifest", f"{path} is not readable JSON: {exc}") from None


def _validate(schema: type[ManifestT], raw: object) -> ManifestT:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BundleError(_field_path(first["loc"]), first["msg"]) from None


def read_manifest(root: str | Path) -> tuple[Path, Manifest]:
    """The bundle directory ``root`` (resolved) and its parsed manifest; files not checked."""
    root_path = _directory(root)
    return root_path, parse_manifest(root_path / MANIFEST_FILENAME)


def _directory(root: str | Path) -> Path:
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise BundleError("bundle_path", f"{root_path} is not a directory")
    return root_path


def load_bundle(root: str | Path, *, verify_hashes: bool = True) -> Bundle:
    """Validate the servable bundle at ``root`` (manifest, files, sha256) and return it."""
    root_path, manifest = read_manifest(root)
    _check_files(root_path, manifest, verify_hashes)
    return Bundle(root=root_path, manifest=manifest)


def load_encoder_bundle(root: str | Path, *, verify_hashes: bool = True) -> EncoderBundle:
    """Validate the base or servable bundle at ``root`` for its encoders and return it."""
    root_path = _directory(root)
    manifest = parse_encoders_manifest(root_path / MANIFEST_FILENAME)
    _check_files(root_path, manifest, verify_hashes)
    return EncoderBundle(root=root_path, manifest=manifest)


def _check_files(root_path: Path, manifest: EncodersManifest, verify_hashes: bool) -> None:
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
