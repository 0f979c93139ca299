"""Assemble the multilabel tags bundle (``models/fashion-tags``) from the default bundle's
encoders and its own committed head.

Usage: ``python -m models.recipes.fashion_mnist.tags_bundle [--out models/fashion-tags]``
(``make bundle`` runs it after ``fusionserve build-default-bundle``).

The bundle tags a Fashion-MNIST photo and its product title with any of the attribute tags of
``models.recipes.fashion_mnist.attribute_tags``. It shares the default bundle's encoders, so
only its head (``fusion_head.onnx``), its reports and its model card are committed (the head
is trained by ``python -m models.recipes.fashion_mnist.tags_head``). This module copies the
encoders and the tokenizer from ``models/default``, writes the manifest (the head's section,
labels, task and thresholds exactly as ``train-head`` wrote them, with this folder's hashes)
and starts the bundle as the service would.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from app.bundle import MANIFEST_FILENAME, Manifest
from app.bundle.loader import sha256_file
from app.config.settings import Settings
from app.core.engine import build_engine, warm_up
from app.errors import StartupError
from models.export.export_support import ExportError
from models.recipes.fashion_mnist import build_default_bundle as default_bundle
from models.recipes.fashion_mnist.attribute_tags import TAGS

TAGS_DIR = default_bundle.DEFAULT_DIR.parent / "fashion-tags"
NAME = "fashion-mnist-tags"
VERSION = "1.0.0"
DESCRIPTION = (
    "Fashion-MNIST attribute tagger (multilabel: body region, sleeves, season, style, sale) "
    "fusing the default bundle's EfficientNet-Lite0 image features and all-MiniLM-L6-v2 "
    "embeddings of a product title, via a head trained with `fusionserve train-head --task "
    "multilabel` (per-label thresholds tuned on validation). Demo bundle: its tags and titles "
    "are generated; see model_card.md."
)
ENCODER_FILES = (
    default_bundle.IMAGE_ENCODER_FILE,
    default_bundle.TEXT_ENCODER_FILE,
    default_bundle.TOKENIZER_FILE,
)
HEAD_FILE = default_bundle.FUSION_HEAD_FILE
REPORT_FILE = default_bundle.REPORT_FILE
EVALUATION_FILE = default_bundle.EVALUATION_FILE
MODEL_CARD_FILE = default_bundle.MODEL_CARD_FILE
STATISTICS_FILE = "tag_statistics.json"  # the dataset's tags, as the tag writer counted them
EVALUATION_FIGURES = ("per_label_f1.png", "precision_recall.png", "reliability_diagram.png")
COMMITTED_FILES = (
    HEAD_FILE,
    MODEL_CARD_FILE,
    REPORT_FILE,
    EVALUATION_FILE,
    STATISTICS_FILE,
    *EVALUATION_FIGURES,
)


def _log(message: str) -> None:
    print(message, flush=True)


def trained_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest ``train-head`` wrote for the committed head (in its training report)."""
    path = out_dir / REPORT_FILE
    if not path.is_file():
        raise ExportError(
            f"{path} is missing: it is committed with the head (train it with "
            "`python -m models.recipes.fashion_mnist.tags_head`)"
        )
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["manifest"]
    if manifest.get("task") != "multilabel" or manifest["labels"] != list(TAGS):
        raise ExportError(f"{path}: the head is not a multilabel head over the tags, in order")
    if manifest["fusion_head"]["file"] != HEAD_FILE:
        raise ExportError(f"{path}: the head file is not {HEAD_FILE}")
    return manifest


def copy_encoders(out_dir: Path, source: Path = default_bundle.DEFAULT_DIR) -> None:
    """The default bundle's encoders and tokenizer, copied unless already the same file."""
    for name in ENCODER_FILES:
        origin, target = source / name, out_dir / name
        if not origin.is_file():
            raise ExportError(f"{origin} is missing: run `fusionserve build-default-bundle`")
        if target.is_file() and sha256_file(target) == sha256_file(origin):
            continue
        shutil.copyfile(origin, target)
        _log(f"- copied {name} from {source}")


def manifest_dict(out_dir: Path, source: Path = default_bundle.DEFAULT_DIR) -> dict[str, Any]:
    """The manifest for the files in ``out_dir``: the default bundle's encoder sections (the
    same files), the head's section as trained, hashes of what is here."""
    base = json.loads((source / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    trained = trained_manifest(out_dir)
    return {
        "schema_version": 1,
        "name": NAME,
        "version": VERSION,
        "description": DESCRIPTION,
        "task": "multilabel",
        "labels": trained["labels"],
        "image_encoder": base["image_encoder"],
        "text_encoder": base["text_encoder"],
        "fusion_head": trained["fusion_head"] | {"sha256": sha256_file(out_dir / HEAD_FILE)},
        "model_card": MODEL_CARD_FILE,
    }


def assemble(out_dir: Path = TAGS_DIR, source: Path = default_bundle.DEFAULT_DIR) -> Manifest:
    """Copy the encoders, write and check the manifest, start the bundle; its manifest."""
    for name in COMMITTED_FILES:
        if not (out_dir / name).is_file():
            raise ExportError(f"{out_dir / name} is missing: it is committed with the head")
    copy_encoders(out_dir, source)
    raw = manifest_dict(out_dir, source)
    Manifest.model_validate(raw)  # fail before writing if the schema disagrees
    path = out_dir / MANIFEST_FILENAME
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    engine = build_engine(Settings(bundle_path=out_dir, device="cpu"))
    warm_up(engine)
    manifest = engine.bundle.manifest
    _log(f"- tags bundle starts and warms up: {manifest.name} {manifest.version} at {out_dir}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TAGS_DIR, help="bundle directory")
    parser.add_argument(
        "--base", type=Path, default=default_bundle.DEFAULT_DIR, help="the default bundle"
    )
    args = parser.parse_args(argv)
    try:
        assemble(args.out.resolve(), args.base.resolve())
    except (ExportError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
