"""``fusionserve fp16-bundle``: a float16 copy of a bundle for GPUs, served like any other bundle.

Usage::

    python -m models.precision.fp16_bundle SRC --out DST [--check-data FILE [--images DIR]]
        [--check-rows 256] [--seed 0] [--device auto|cuda|cpu] [--keep-op TYPE ...]
        [--keep-node NAME ...] [--name NAME] [--version VERSION] [--force] [--no-progress]

1. Load SRC as the service does (hashes and tensor signatures checked).
2. Convert each of its three models with ONNX Runtime's float16 converter
   (``models.precision.float16_conversion``): float16 weights and compute, float32 inputs and
   outputs (a ``Cast`` at each), so the manifest's interface is unchanged. A model without
   float32 weights (a float64 head) is kept as it is.
3. Write DST: the converted models, SRC's other files (hard-linked, else copied), a manifest
   with a distinct name (default ``<SRC name>-fp16``) and the new files' sha256,
   ``conversion.json`` and a model card.
4. Start DST as the service would (``app.core.engine.build_engine`` on ``--device``, warm-up),
   record which of each model's nodes ran in float16 there
   (``models.precision.kernel_precision``: the x86 CPU provider runs most arithmetic in
   float32 between inserted casts; CUDA runs it in float16), and with ``--check-data`` compare
   it with SRC on held-out rows (``val``, never ``test``): embedding cosines, fused top-1
   agreement, largest probability difference. Only then is DST moved into place.

Errors in the input (bundle, dataset, options, output directory) print one line on stderr and
exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from app.bundle.loader import Bundle, load_bundle
from app.bundle.manifest import MANIFEST_FILENAME
from app.core.engine import Engine, warm_up
from app.errors import BundleError, StartupError
from models.data.dataset import DatasetError, Example, load_dataset
from models.data.features import DEVICES, FeatureError, load_engine
from models.evaluation.bundle_comparison import compare, held_out_rows
from models.export.bundle_files import OutputError, link_or_copy, staged_bundle
from models.export.derived_bundle import (
    COMPONENTS,
    derived_manifest,
    embed_golden_again,
    file_info,
    tool_versions,
)
from models.precision import float16_conversion, kernel_precision
from models.precision.float16_conversion import Fp16Error
from models.reporting.fp16_card import render_card

REPORT_FILE = "conversion.json"
MODEL_CARD_FILE = "model_card.md"
USER_ERRORS = (BundleError, StartupError, DatasetError, FeatureError, OutputError, Fp16Error)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionserve fp16-bundle",
        description="Write an fp16 copy of a bundle for GPUs (ONNX Runtime's float16 converter, "
        "float32 inputs and outputs kept) and check it.",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="bundle to convert")
    parser.add_argument("--out", type=Path, required=True, help="directory of the new bundle")
    parser.add_argument("--check-data", type=Path, help="CSV or JSONL dataset to compare on")
    parser.add_argument("--images", type=Path, help="image root (default: the dataset's folder)")
    parser.add_argument("--check-rows", type=int, default=256, help="rows compared with SRC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the new bundle is started and checked (the service's device setting)",
    )
    parser.add_argument(
        "--keep-op", action="append", default=[], metavar="TYPE", help="keep this op type float32"
    )
    parser.add_argument(
        "--keep-node", action="append", default=[], metavar="NAME", help="keep this node float32"
    )
    parser.add_argument("--name", help="bundle name (default: SRC's name + '-fp16')")
    parser.add_argument("--version", help="bundle version (default: SRC's)")
    parser.add_argument("--force", action="store_true", help="replace --out if it is not empty")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _convert_all(args: argparse.Namespace, source: Bundle, staging: Path) -> dict[str, Any]:
    """Each model converted into ``staging`` (or linked when left alone), with its entry."""
    entries: dict[str, Any] = {}
    kept_nodes: set[str] = set()
    for component in COMPONENTS:
        started = time.perf_counter()
        path = source.path(getattr(source.manifest, component).file)
        target = staging / path.name
        entry: dict[str, Any] = {"source": file_info(path)}
        structure = float16_conversion.convert(path, target, args.keep_op, args.keep_node)
        if structure is None:
            link_or_copy(path, target)
            entry |= {"precision": "unchanged (no float32 weights)", "written": file_info(target)}
        else:
            kept_nodes |= set(structure["float32_nodes"])
            written = file_info(target)
            entry |= {"precision": "float16", "written": written, **structure}
            entry["size_ratio"] = round(written["bytes"] / entry["source"]["bytes"], 4)
        entry["seconds"] = round(time.perf_counter() - started, 2)
        entries[component] = entry
        print(f"- {component}: {entry['precision']}", flush=True)
    unknown = sorted(set(args.keep_node) - kept_nodes)
    if unknown:
        raise Fp16Error(
            f"--keep-node: no node named {', '.join(map(repr, unknown))} in the converted models"
        )
    return entries


def _manifest(
    args: argparse.Namespace, source: Bundle, staging: Path, rewritten: list[str]
) -> dict[str, Any]:
    manifest = source.manifest
    return derived_manifest(
        source,
        staging,
        rewritten,
        name=args.name or f"{manifest.name}-fp16",
        version=args.version or manifest.version,
        description=(
            f"{manifest.name} {manifest.version} with float16 models for GPUs (ONNX Runtime's "
            f"float16 converter, float32 inputs and outputs; see {MODEL_CARD_FILE}). "
            f"{manifest.description}"
        ).strip(),
        model_card=MODEL_CARD_FILE,
    )


def _check_rows(args: argparse.Namespace) -> tuple[tuple[Example, ...], str] | None:
    """Held-out rows to compare on (``val``, never ``test``), read before any work."""
    if args.check_data is None:
        return None
    rows, where = held_out_rows(
        load_dataset(args.check_data, args.images), args.check_rows, args.seed
    )
    if not rows:
        raise DatasetError(f"{args.check_data}: no rows outside the test split to compare on")
    return rows, where


def _check(
    args: argparse.Namespace,
    rows: tuple[tuple[Example, ...], str] | None,
    source: Bundle,
    converted: Engine,
) -> dict[str, Any] | None:
    """SRC and the new bundle on the same device, compared on the held-out rows."""
    if rows is None:
        return None
    reference = load_engine(source.root, device=args.device)
    report = compare(reference, converted, *rows, progress=not args.no_progress)
    return report | {"seed": args.seed, "dataset": str(args.check_data)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Convert, write, start and check the bundle; returns the report (also written)."""
    started = time.perf_counter()
    if not args.source.is_dir():
        raise Fp16Error(f"SRC {args.source} is not a bundle directory")
    if args.check_rows < 1:
        raise Fp16Error("--check-rows must be at least 1")
    source = load_bundle(args.source)
    rows = _check_rows(args)
    report: dict[str, Any] = {
        "tool": "fusionserve fp16-bundle",
        "source": {
            "path": str(args.source),
            "name": source.manifest.name,
            "version": source.manifest.version,
        },
    }
    with staged_bundle(args.out, source.root, args.force, "--out") as staging:
        report["models"] = _convert_all(args, source, staging)
        rewritten = [c for c, e in report["models"].items() if e["precision"] == "float16"]
        tokenizer = source.manifest.text_encoder.tokenizer.file
        link_or_copy(source.path(tokenizer), staging / tokenizer)
        raw = _manifest(args, source, staging, rewritten)
        (staging / MANIFEST_FILENAME).write_text(json.dumps(raw, indent=2) + "\n")
        report["bundle"] = {"name": raw["name"], "version": raw["version"]}
        report["versions"] = tool_versions()
        (staging / MODEL_CARD_FILE).write_text(render_card(report), encoding="utf-8")
        converted = load_engine(staging, device=args.device)  # as the service loads it
        if embed_golden_again(source, staging, converted, raw):
            converted = load_engine(staging, device=args.device)  # golden inputs checked
        warm_up(converted, 8)
        report["device"] = {"requested": args.device, "providers": converted.providers}
        report["kernels"] = {
            c: kernel_precision.profile(staging / raw[c]["file"], converted.providers[c])
            for c in rewritten
        }
        report["check"] = _check(args, rows, source, converted)
        report["seconds"] = round(time.perf_counter() - started, 1)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        (staging / MODEL_CARD_FILE).write_text(render_card(report), encoding="utf-8")
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [f"bundle {report['bundle']['name']} {report['bundle']['version']}"]
    for component, entry in report["models"].items():
        size = f"{entry['source']['bytes'] / 1e6:.1f} -> {entry['written']['bytes'] / 1e6:.1f} MB"
        kernels = report["kernels"].get(component)
        ran = (
            f"; on {kernels['provider']}: {kernels['by_input_precision'].get('float16', 0)} of "
            f"{kernels['kernels']} nodes ran in float16"
            if kernels
            else ""
        )
        lines.append(f"  {component}: {entry['precision']}, {size}{ran}")
    check = report["check"]
    if check is not None:
        lines.append(
            f"  check on {check['rows']} {check['source']} rows: cosine to SRC image "
            f"{check['image_cosine']['min']:.5f} (min), text {check['text_cosine']['min']:.5f} "
            f"(min); fused top-1 agreement {check['fused_top1_agreement']:.4f}, largest "
            f"probability difference {check['fused_max_abs_probability_diff']:.5f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run(args)
    except (*USER_ERRORS, OSError) as exc:
        print(f"fp16-bundle: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"wrote {args.out} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
