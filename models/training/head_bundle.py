"""Write a trained fusion head as a complete bundle, and prove the service serves it right.

The new bundle reuses the base bundle's encoders and tokenizer (hard-linked where possible,
else copied; their manifest sections unchanged), adds ``fusion_head.onnx`` and a manifest with
the dataset's labels, presence inputs and the fitted temperature (a multilabel bundle: also
``"task": "multilabel"`` and the per-label ``thresholds``). It is written into a staging
directory next to the output and renamed into place only after it passed every check.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.bundle.loader import sha256_file
from app.bundle.manifest import MANIFEST_FILENAME, EncodersManifest, Manifest
from models.data.features import load_engine
from models.evaluation.classification_metrics import calibrated_probabilities
from models.export.bundle_files import OutputError as OutputError
from models.export.bundle_files import check_output as check_output
from models.export.bundle_files import link_or_copy as link_or_copy
from models.export.bundle_files import staged_bundle as staged_bundle
from models.export.export_support import (
    OPSET,
    check_close,
    cpu_session,
    legacy_exporter_warnings_silenced,
    run_session,
    staged_output,
)
from models.training.fusion_head import INPUT_NAMES, OUTPUT_NAME, FusionHead, head_logits

HEAD_FILE = "fusion_head.onnx"
MODEL_CARD_FILE = "model_card.md"
REPORT_FILE = "training_report.json"
TOLERANCE = 1e-5
CHECK_ROWS = 1000  # validation rows (each in three presence patterns) the checks run on


def copy_encoders(base: EncodersManifest, base_dir: Path, target: Path) -> list[str]:
    """Bring the base bundle's encoder, tokenizer and golden inputs files; return their
    relative paths."""
    files = [ref.file for ref in base.encoder_files().values()]
    reserved = {HEAD_FILE, MODEL_CARD_FILE, REPORT_FILE, MANIFEST_FILENAME}
    for name in files:
        if name in reserved:
            raise OutputError(f"the base bundle's encoder file {name!r} clashes with {name!r}")
        link_or_copy(base_dir / name, target / name)
    return files


def mixed_presence(
    image: np.ndarray, text: np.ndarray, limit: int = CHECK_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``limit`` rows, each three times: both present, image only, text only."""
    rows = min(len(image), limit)
    ones, zeros = np.ones(rows, dtype=bool), np.zeros(rows, dtype=bool)
    return (
        np.concatenate([image[:rows]] * 3),
        np.concatenate([text[:rows]] * 3),
        np.concatenate([ones, ones, zeros]),
        np.concatenate([ones, zeros, ones]),
    )


def export_head(head: FusionHead, path: Path, image: np.ndarray, text: np.ndarray) -> float:
    """Export to ONNX (legacy exporter, opset 17, dynamic batch) and check against torch on
    ``image``/``text`` in every presence pattern; returns the max abs logit difference."""
    check = mixed_presence(image, text)
    feeds = {
        name: array if array.dtype != bool else array.astype(np.float32).reshape(-1, 1)
        for name, array in zip(INPUT_NAMES, check, strict=True)
    }
    head.eval()
    with staged_output(path) as staging:
        example = tuple(torch.from_numpy(feeds[name][:2]) for name in INPUT_NAMES)
        with legacy_exporter_warnings_silenced():
            torch.onnx.export(
                head,
                example,
                str(staging),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
            )
        actual = run_session(cpu_session(staging), feeds)[OUTPUT_NAME]
        return check_close("fusion head", actual, head_logits(head, *check), TOLERANCE)


def manifest_dict(
    base_raw: dict[str, Any],
    *,
    labels: Sequence[str],
    name: str,
    version: str,
    description: str,
    head_sha256: str,
    temperature: float,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The new manifest: the base's encoder sections (and golden inputs) as they are, a new
    head and labels; with ``thresholds`` (one per label), a multilabel bundle."""
    task = {} if thresholds is None else {"task": "multilabel"}
    manifest = {
        "schema_version": base_raw["schema_version"],
        "name": name,
        "version": version,
        "description": description,
        **task,
        "labels": list(labels),
        "image_encoder": base_raw["image_encoder"],
        "text_encoder": base_raw["text_encoder"],
        "fusion_head": {
            "file": HEAD_FILE,
            "sha256": head_sha256,
            "image_input": INPUT_NAMES[0],
            "text_input": INPUT_NAMES[1],
            "image_present": INPUT_NAMES[2],
            "text_present": INPUT_NAMES[3],
            "output": OUTPUT_NAME,
            "output_type": "logits",
            "temperature": temperature,
        },
        "model_card": MODEL_CARD_FILE,
    }
    if thresholds is not None:
        manifest["fusion_head"]["thresholds"] = [float(t) for t in thresholds]
    if "golden" in base_raw:  # the encoders' golden inputs, copied with them (copy_encoders)
        manifest["golden"] = base_raw["golden"]
    Manifest.model_validate(manifest)  # the service's own schema, before anything is written
    return manifest


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def check_served(
    bundle_dir: Path,
    head: FusionHead,
    temperature: float,
    image: np.ndarray,
    text: np.ndarray,
    *,
    multilabel: bool = False,
) -> float:
    """Load the bundle as the service does (hashes, tensor names and shapes checked) and
    compare its probabilities with torch's ``softmax(logits / T)`` (multilabel:
    ``sigmoid(logits / T)``) in every presence pattern.

    The service is fed what it feeds itself: zeros for a missing modality's features; torch
    gets the real features with presence 0. Returns the max abs probability difference."""
    all_image, all_text, image_present, text_present = mixed_presence(image, text)
    pipeline = load_engine(bundle_dir, threads=1).pipeline
    served = pipeline.probabilities(
        pipeline.head_scores(
            np.where(image_present[:, None], all_image, 0.0),
            np.where(text_present[:, None], all_text, 0.0),
            image_present,
            text_present,
        )
    )
    logits = head_logits(head, all_image, all_text, image_present, text_present)
    if multilabel:
        # torch's own sigmoid, not the service's: the check compares two implementations.
        scaled = torch.from_numpy(logits).to(torch.float64) / temperature
        expected = torch.sigmoid(scaled).numpy()
    else:
        expected = calibrated_probabilities(logits, temperature)
    return check_close("served probabilities", served, expected, TOLERANCE)


def file_info(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
