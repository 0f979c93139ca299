"""``fusionserve export-encoders``: a base bundle from local image and text checkpoints.

Usage::

    fusionserve export-encoders --image DIR --text DIR --out DIR [--precision fp16]
        [--pooling MODE --normalize] [--max-length N] [--prompt-name NAME] [--name NAME]

``--image``: a Hugging Face transformers vision checkpoint (config.json, weights,
preprocessor_config.json) or a timm one (config.json with ``pretrained_cfg``). ``--text``: a
sentence-transformers directory (modules.json), a CLIP or SigLIP checkpoint (its text tower), or
a plain transformers text model (then ``--pooling`` is required). Local files only: the hub is
never contacted, and a missing file is an error naming it.

Steps: build each source (its preprocessing mapped onto the manifest, or refused naming the
field and value), export both graphs (dynamic batch and sequence axes; pooling, Dense and
normalisation inside the text graph) and check them against torch, write the manifest, then run
the parity check (``models.encoders.encoder_parity``: the served path against the source's own
pipeline on real inputs) and fail if a target is missed. Golden inputs with their embeddings are
written for the service to re-check at load. The bundle appears only when everything passed;
``parity.json`` in it holds the report. ``fusionserve train-head --base-bundle DIR`` then trains
a head on it.

The Python API (``export_encoders``) takes sources built by hand too: the default recipe's
EfficientNet-Lite0 is one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from app.bundle.loader import sha256_file
from app.bundle.manifest import MANIFEST_FILENAME, SCHEMA_VERSION, EncodersManifest
from app.core.encoders import Encoders
from models.encoders import encoder_parity
from models.encoders.encoder_graphs import (
    Precision,
    export_image_graph,
    export_text_graph,
)
from models.encoders.encoder_sources import ImageSource, SourceError, TextSource
from models.encoders.parity_inputs import parity_images, parity_texts
from models.export.bundle_files import OutputError, staged_bundle
from models.export.export_support import ExportError

IMAGE_FILE = "image_encoder.onnx"
TEXT_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
PARITY_FILE = "parity.json"
_VERSIONED = ("onnxruntime", "torch", "transformers", "sentence-transformers", "Pillow", "numpy")


@dataclass(frozen=True)
class ExportOptions:
    name: str
    version: str = "1.0.0"
    description: str = ""
    precision: Precision = "fp32"
    force: bool = False
    large_inputs: bool = True  # the parity corpus's large images (reduced-scale decodes)


def _versions() -> dict[str, str]:
    found = {}
    for package in _VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _manifest(
    staging: Path, image: ImageSource, text: TextSource, options: ExportOptions
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": options.name,
        "version": options.version,
        "description": options.description
        or f"{image.family} image encoder and {text.family} text encoder "
        f"(fusionserve export-encoders, {options.precision})",
        "image_encoder": {
            "file": IMAGE_FILE,
            "sha256": sha256_file(staging / IMAGE_FILE),
            "input": image.input_name,
            "output": image.output_name,
            "embedding_dim": image.embedding_dim,
            "preprocess": image.preprocess.model_dump(mode="json", exclude_defaults=True),
        },
        "text_encoder": {
            "file": TEXT_FILE,
            "sha256": sha256_file(staging / TEXT_FILE),
            "tokenizer": {"file": TOKENIZER_FILE, "sha256": sha256_file(staging / TOKENIZER_FILE)},
            "max_length": text.max_length,
            "input_ids": text.input_ids_name,
            "attention_mask": text.attention_mask_name if text.takes_attention_mask else None,
            "token_type_ids": None,
            "output": text.output_name,
            "embedding_dim": text.embedding_dim,
            "padding": text.padding,
            "pad_token_id": text.pad_token_id,
            "prompt": text.prompt,
        },
    }


def _write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    EncodersManifest.model_validate(manifest)  # the loader's own schema, before writing
    (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))


def _load(staging: Path) -> Encoders:
    from models.data.features import load_encoders

    return load_encoders(staging, threads=0)


def _parity(
    encoders: Encoders, image: ImageSource, text: TextSource, options: ExportOptions
) -> dict[str, Any]:
    decoder = encoders.pipeline.decoder
    images = parity_images(
        image.preprocess,
        min_side=decoder.min_side,
        max_pixels=decoder.max_pixels,
        large=options.large_inputs,
    )
    texts = parity_texts(text.max_length)
    image_rows = encoder_parity.image_parity(encoders, image, images)
    text_rows = encoder_parity.text_parity(encoders, text, texts)
    return {
        "image_encoder": {
            "reference": image.reference_name,
            "summary": encoder_parity.summary(image_rows, options.precision),
            "inputs": [row.as_json() for row in image_rows],
        },
        "text_encoder": {
            "reference": text.reference_name,
            "summary": encoder_parity.summary(text_rows, options.precision),
            "inputs": [row.as_json() for row in text_rows],
        },
    }


def _golden(staging: Path, manifest: dict[str, Any], encoders: Encoders) -> None:
    from models.encoders.golden_writer import golden_images, golden_texts, write_golden

    manifest["golden"] = write_golden(staging, encoders.pipeline, golden_images(), golden_texts())
    _write_manifest(staging, manifest)
    _load(staging)  # the load-time check passes on the machine that wrote it


def export_encoders(
    image: ImageSource, text: TextSource, out: Path, options: ExportOptions
) -> dict[str, Any]:
    """Write a base bundle for ``image`` and ``text`` to ``out``; return its parity report.

    Raises ``ExportError`` (a graph or parity target missed), ``OutputError`` (``out``)."""
    started = time.perf_counter()
    with staged_bundle(out, None, options.force) as staging:
        graphs = {
            "image_encoder": export_image_graph(image, staging / IMAGE_FILE, options.precision),
            "text_encoder": export_text_graph(text, staging / TEXT_FILE, options.precision),
        }
        (staging / TOKENIZER_FILE).write_text(text.tokenizer_json, encoding="utf-8")
        manifest = _manifest(staging, image, text, options)
        _write_manifest(staging, manifest)
        encoders = _load(staging)  # as the service loads them: parity and golden inputs
        parity = _parity(encoders, image, text, options)
        report: dict[str, Any] = {
            "bundle": {"name": options.name, "version": options.version},
            "precision": options.precision,
            "versions": _versions(),
            "graphs": {name: check.as_json() for name, check in graphs.items()},
            "parity": parity,
            "departures": [
                "EXIF orientation is applied (the references ignore it)",
                "transparency is composited onto white (the references drop alpha)",
                "16-bit greyscale is scaled to 8 bits (Pillow's convert clips it)",
                "text is NFC-normalised and stripped; text with nothing visible is refused",
            ],
        }
        for encoder in ("image_encoder", "text_encoder"):
            encoder_parity.check_summary(encoder, parity[encoder]["summary"])
        _golden(staging, manifest, encoders)
        report["seconds"] = round(time.perf_counter() - started, 1)
        (staging / PARITY_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def load_image_source(directory: Path) -> ImageSource:
    """A Hugging Face or timm image checkpoint, by what its config says."""
    config = directory / "config.json"
    if not config.is_file():
        raise SourceError(f"--image {directory}: no config.json there")
    raw = json.loads(config.read_text(encoding="utf-8"))
    if "pretrained_cfg" in raw or "architecture" in raw:
        from models.encoders.hf_image_source import load_timm_image_source

        return load_timm_image_source(directory)
    from models.encoders.hf_image_source import load_hf_image_source

    return load_hf_image_source(directory)


def load_text_source_for(args: argparse.Namespace) -> TextSource:
    from models.encoders.text_sources import load_text_source

    return load_text_source(
        args.text,
        pooling=args.pooling,
        normalize=args.normalize,
        max_length=args.max_length,
        prompt_name=args.prompt_name,
    )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The command's summary of a report: each encoder's graph and parity figures."""
    lines = []
    for encoder in ("image_encoder", "text_encoder"):
        graph = report["graphs"][encoder]
        parity = report["parity"][encoder]
        lines.append(
            f"- {encoder}: {graph['bytes'] / 1e6:.1f} MB, exported in "
            f"{graph['export_seconds']:.1f}s, ONNX vs torch cosine {graph['min_cosine']:.6f}; "
            f"parity with {parity['reference']}:"
        )
        for kind, entry in parity["summary"].items():
            target = f" (target {entry['target']})" if "target" in entry else " (measured only)"
            refused = f", refused: {', '.join(entry['refused'])}" if entry["refused"] else ""
            lines.append(
                f"    {kind}: {entry['inputs']} inputs, min cosine {entry['min_cosine']} "
                f"on {entry['worst_input']!r}{target}{refused}"
            )
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionserve export-encoders", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--image", type=Path, required=True, help="image checkpoint directory")
    parser.add_argument("--text", type=Path, required=True, help="text checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="the base bundle to write")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument(
        "--pooling",
        choices=("cls", "lasttoken", "max", "mean", "mean_sqrt_len_tokens", "weightedmean"),
        help="a plain transformers text model's pooling (sentence-transformers directories "
        "and CLIP or SigLIP towers say their own)",
    )
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise a plain text model's embeddings",
    )
    parser.add_argument("--max-length", type=int, help="a plain text model's token limit")
    parser.add_argument(
        "--prompt-name",
        help="apply this named prompt of a sentence-transformers model to every text",
    )
    parser.add_argument("--name", help="the bundle's name (default: the output directory's)")
    parser.add_argument("--version", default="1.0.0", help="the bundle's version")
    parser.add_argument("--description", default="")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, never the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    options = ExportOptions(
        name=args.name or args.out.resolve().name,
        version=args.version,
        description=args.description,
        precision=args.precision,
        force=args.force,
    )
    try:
        image = load_image_source(args.image)
        text = load_text_source_for(args)
        print(
            f"exporting {image.family} ({image.reference_name}) and {text.family} "
            f"({text.reference_name}) to {args.out}",
            flush=True,
        )
        report = export_encoders(image, text, args.out, options)
    except (SourceError, ExportError, OutputError) as exc:
        print(f"export-encoders: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.out} in {report['seconds']:.1f}s (report: {args.out / PARITY_FILE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
