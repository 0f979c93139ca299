"""``fusionserve quantize-bundle``: an int8 copy of a bundle, served like any other bundle.

Usage::

    python -m models.quantization.quantize_bundle SRC DST --calibration-data FILE [--images DIR]
        [--split train] [--samples 256] [--check-samples 256] [--seed 0]
        [--image-mode static|dynamic|none] [--text-mode static|dynamic|none]
        [--calibration-method percentile|minmax] [--exclude-node NAME ...]
        [--name NAME] [--version VERSION] [--force] [--no-progress]

1. Load SRC as the service does (hashes and tensor signatures checked).
2. Choose seeded calibration rows from the dataset's ``--split`` and check rows from ``val``
   (``models.quantization.calibration``); test rows are never used. Their images and texts go
   through the service's own preprocessing.
3. Quantise each encoder (``models.quantization.encoder_quantization``): by default the image
   encoder statically (QDQ,
   per-channel int8 weights, calibrated uint8 activations) and the text encoder dynamically.
4. Write DST: the quantised encoders, SRC's fusion head and tokenizer (hard-linked, else
   copied), a manifest with a distinct name (default ``<SRC name>-int8``) and the new files'
   sha256, ``quantization.json`` and a model card.
5. Start DST as the service would (``app.core.engine.build_engine`` and warm-up), then compare it
   with SRC on the check rows: cosine of each encoder's embeddings, agreement of the fused
   top-1 labels, largest probability difference. Only then is DST moved into place.

Errors in the input (bundle, dataset, images, options, output directory) print one line on
stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.bundle.loader import Bundle, load_bundle
from app.bundle.manifest import MANIFEST_FILENAME
from app.core.engine import Engine, warm_up
from app.errors import BundleError, StartupError
from models.data.dataset import DatasetError, load_dataset
from models.data.features import FeatureError, load_engine
from models.evaluation.bundle_comparison import compare
from models.export.bundle_files import OutputError, link_or_copy, staged_bundle
from models.export.derived_bundle import (
    derived_manifest,
    embed_golden_again,
    file_info,
    tool_versions,
)
from models.quantization import calibration
from models.quantization import encoder_quantization as quantize
from models.reporting.quantize_card import render_card

REPORT_FILE = "quantization.json"
MODEL_CARD_FILE = "model_card.md"
ENCODERS = ("image_encoder", "text_encoder")
USER_ERRORS = (
    BundleError,
    StartupError,
    DatasetError,
    FeatureError,
    OutputError,
    calibration.CalibrationError,
    quantize.QuantizeError,
)


def _log(message: str) -> None:
    print(message, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionserve quantize-bundle",
        description="Write an int8 copy of a bundle (ONNX Runtime quantisation) and check it.",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="bundle to quantise")
    parser.add_argument("dest", type=Path, metavar="DST", help="directory of the new bundle")
    parser.add_argument(
        "--calibration-data", type=Path, help="CSV or JSONL dataset (needed for static modes)"
    )
    parser.add_argument("--images", type=Path, help="image root (default: the dataset's folder)")
    parser.add_argument("--split", choices=calibration.CALIBRATION_SPLITS, default="train")
    parser.add_argument("--samples", type=int, default=256, help="calibration rows")
    parser.add_argument("--check-samples", type=int, default=256, help="rows compared with SRC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-mode", choices=quantize.MODES, default="static")
    parser.add_argument("--text-mode", choices=quantize.MODES, default="dynamic")
    parser.add_argument(
        "--calibration-method", choices=sorted(quantize.CALIBRATION_METHODS), default="percentile"
    )
    parser.add_argument(
        "--exclude-node",
        action="append",
        default=[],
        metavar="NAME",
        help="keep this node (of either encoder, after pre-processing) in float; repeatable",
    )
    parser.add_argument("--name", help="bundle name (default: SRC's name + '-int8')")
    parser.add_argument("--version", help="bundle version (default: SRC's)")
    parser.add_argument("--force", action="store_true", help="replace DST if it is not empty")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if not args.source.is_dir():
        raise quantize.QuantizeError(f"SRC {args.source} is not a bundle directory")
    modes = {"image encoder": args.image_mode, "text encoder": args.text_mode}
    static = [name for name, mode in modes.items() if mode == "static"]
    if static and args.calibration_data is None:
        raise calibration.CalibrationError(
            f"static quantisation of the {' and '.join(static)} needs --calibration-data "
            "(or --image-mode/--text-mode dynamic)"
        )
    if args.image_mode == "none" and args.text_mode == "none":
        raise quantize.QuantizeError("--image-mode none and --text-mode none: nothing to do")


class Job:
    """One quantisation: the source bundle as served, the rows, the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        _check_args(args)
        self.args = args
        self.source: Bundle = load_bundle(args.source)
        self.engine: Engine = load_engine(self.source.root)
        self.sample: calibration.Sample | None = None
        self.found_nodes: set[str] = set()
        if args.calibration_data is not None:
            dataset = load_dataset(args.calibration_data, args.images)
            self.sample = calibration.choose(
                dataset, args.split, args.samples, args.check_samples, args.seed
            )

    def reader(self, encoder: str) -> calibration.FeedReader | None:
        if self.sample is None:
            return None
        pipeline, rows = self.engine.pipeline, self.sample.calibration
        feeds = (
            calibration.image_feeds(pipeline, rows)
            if encoder == "image_encoder"
            else calibration.text_feeds(self.engine, rows)
        )
        return calibration.FeedReader(feeds)

    def quantize_encoder(self, encoder: str, staging: Path, work: Path) -> dict[str, Any]:
        """Write ``encoder``'s file into ``staging`` (quantised, or linked for mode none)."""
        spec = getattr(self.source.manifest, encoder)
        mode = self.args.image_mode if encoder == "image_encoder" else self.args.text_mode
        source_path, target = self.source.path(spec.file), staging / spec.file
        entry: dict[str, Any] = {"mode": mode, "source": file_info(source_path)}
        if mode == "none":
            link_or_copy(source_path, target)
            return entry | {"quantized": file_info(target)}
        started = time.perf_counter()
        prepared = work / f"{encoder}.prepared.onnx"
        dropped = quantize.prepare(source_path, prepared, spec.output)
        recipe = quantize.IMAGE_RECIPE if encoder == "image_encoder" else quantize.TEXT_RECIPE
        known = set(quantize.node_names(prepared))
        self.found_nodes |= known & set(self.args.exclude_node)
        excluded = quantize.quantize(
            prepared,
            target,
            mode,
            recipe,
            reader=self.reader(encoder) if mode == "static" else None,
            method=self.args.calibration_method,
            exclude_nodes=[name for name in self.args.exclude_node if name in known],
        )
        quantized = file_info(target)
        return entry | {
            "recipe": recipe.describe() if mode == "static" else {"op_types": "default"},
            "calibration_method": self.args.calibration_method if mode == "static" else None,
            "dropped_outputs": dropped,
            "float_nodes": excluded,
            "quantized": quantized,
            "size_ratio": round(quantized["bytes"] / entry["source"]["bytes"], 4),
            "seconds": round(time.perf_counter() - started, 2),
        }

    def check_exclusions(self) -> None:
        unknown = sorted(set(self.args.exclude_node) - self.found_nodes)
        if unknown:
            raise quantize.QuantizeError(
                f"--exclude-node: no node named {', '.join(map(repr, unknown))} in the "
                "quantised encoders (names are those after pre-processing)"
            )

    def manifest(self, staging: Path) -> dict[str, Any]:
        """SRC's manifest with the new name, version, description, hashes and model card."""
        source = self.source.manifest
        modes = f"image encoder {self.args.image_mode}, text encoder {self.args.text_mode}"
        return derived_manifest(
            self.source,
            staging,
            ENCODERS,
            name=self.args.name or f"{source.name}-int8",
            version=self.args.version or source.version,
            description=(
                f"{source.name} {source.version} with int8 encoders ({modes}; ONNX Runtime "
                f"quantisation, see {MODEL_CARD_FILE}). {source.description}"
            ).strip(),
            model_card=MODEL_CARD_FILE,
        )

    def calibration_entry(self) -> dict[str, Any] | None:
        if self.sample is None:
            return None
        args = self.args
        return {
            "dataset": str(args.calibration_data),
            "image_root": str(args.images or args.calibration_data.parent),
            "split": self.sample.split,
            "rows": len(self.sample.calibration),
            "seed": args.seed,
            "check_rows": len(self.sample.check),
            "check_source": self.sample.check_source,
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Quantise, write, start and check the bundle; returns the report (also written)."""
    started = time.perf_counter()
    job = Job(args)
    source = job.source.manifest
    report: dict[str, Any] = {
        "tool": "fusionserve quantize-bundle",
        "source": {"path": str(args.source), "name": source.name, "version": source.version},
        "calibration": job.calibration_entry(),
    }
    with (
        staged_bundle(args.dest, job.source.root, args.force, "DST") as staging,
        tempfile.TemporaryDirectory(prefix="fusionserve-quantize-") as work,
    ):
        for encoder in ENCODERS:
            _log(f"- {encoder}: {getattr(args, encoder.split('_')[0] + '_mode')}")
            report[encoder] = job.quantize_encoder(encoder, staging, Path(work))
        job.check_exclusions()
        for ref in (source.fusion_head, source.text_encoder.tokenizer):
            link_or_copy(job.source.path(ref.file), staging / ref.file)
        manifest = job.manifest(staging)
        (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n")
        report["bundle"] = {"name": manifest["name"], "version": manifest["version"]}
        report["versions"] = tool_versions()
        (staging / MODEL_CARD_FILE).write_text(render_card(report), encoding="utf-8")
        quantized = load_engine(staging)  # as the service loads it: hashes, signatures
        if embed_golden_again(job.source, staging, quantized, manifest):
            quantized = load_engine(staging)  # its golden inputs checked as the service will
        warm_up(quantized, 8)
        report["check"] = (
            compare(
                job.engine,
                quantized,
                job.sample.check,
                job.sample.check_source,
                not args.no_progress,
            )
            if job.sample is not None and job.sample.check
            else None
        )
        report["seconds"] = round(time.perf_counter() - started, 1)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        (staging / MODEL_CARD_FILE).write_text(render_card(report), encoding="utf-8")
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [f"bundle {report['bundle']['name']} {report['bundle']['version']}"]
    for encoder in ENCODERS:
        entry = report[encoder]
        size = f"{entry['source']['bytes'] / 1e6:.1f} -> {entry['quantized']['bytes'] / 1e6:.1f} MB"
        lines.append(f"  {encoder}: {entry['mode']}, {size}")
    check = report["check"]
    if check is not None:
        lines.append(
            f"  check on {check['rows']} {check['source']} rows: cosine to SRC image "
            f"{check['image_cosine']['mean']:.4f} (min {check['image_cosine']['min']:.4f}), "
            f"text {check['text_cosine']['mean']:.4f} (min {check['text_cosine']['min']:.4f}); "
            f"fused top-1 agreement {check['fused_top1_agreement']:.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run(args)
    except (*USER_ERRORS, OSError) as exc:
        print(f"quantize-bundle: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"wrote {args.dest} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
