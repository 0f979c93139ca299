"""The manifest and report entries of a bundle derived from another one.

Shared by the tools that rewrite some of a bundle's models and keep the rest
(``quantize-bundle``, ``fp16-bundle``): the new manifest is the source's with a new name,
version, description, model card and the rewritten files' hashes, validated by the service's
own schema before anything is written. Golden inputs are not carried as they are (the
rewritten models answer differently): ``embed_golden_again`` stores the source's inputs with
the new bundle's own embeddings.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from app.bundle.golden_inputs import read_golden
from app.bundle.loader import Bundle, sha256_file
from app.bundle.manifest import MANIFEST_FILENAME, Manifest
from app.core.engine import Engine
from models.encoders.golden_writer import rewrite_golden

COMPONENTS = ("image_encoder", "text_encoder", "fusion_head")


def file_info(path: Path) -> dict[str, Any]:
    """A file's name, sha256 and size, as the reports record it."""
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def derived_manifest(
    source: Bundle,
    staging: Path,
    rewritten: Iterable[str],
    *,
    name: str,
    version: str,
    description: str,
    model_card: str,
) -> dict[str, Any]:
    """``source``'s raw manifest with the given name, version, description and model card, and
    the sha256 of each ``rewritten`` component (``image_encoder``...) read from ``staging``;
    without golden inputs (``embed_golden_again`` adds them)."""
    raw: dict[str, Any] = json.loads(source.path(MANIFEST_FILENAME).read_text())
    raw.pop("golden", None)
    raw |= {
        "name": name,
        "version": version,
        "description": description,
        "model_card": model_card,
    }
    for component in rewritten:
        raw[component]["sha256"] = sha256_file(staging / raw[component]["file"])
    Manifest.model_validate(raw)  # the service's own schema, before anything is written
    return raw


def embed_golden_again(source: Bundle, staging: Path, derived: Engine, raw: dict[str, Any]) -> bool:
    """Store ``source``'s golden inputs in ``staging`` with the embeddings of ``derived`` (the
    new bundle, loaded from ``staging``) and the source's ``min_cosine``, and rewrite the
    manifest ``raw`` with them; ``False`` (nothing written) when the source has none."""
    golden, ref = read_golden(source), source.manifest.golden
    if golden is None or ref is None:
        return False
    raw["golden"] = rewrite_golden(golden, staging, derived.pipeline, ref.min_cosine)
    Manifest.model_validate(raw)
    (staging / MANIFEST_FILENAME).write_text(json.dumps(raw, indent=2) + "\n")
    return True


def tool_versions() -> dict[str, str]:
    """The versions a derived bundle's report records."""
    return {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
    }
