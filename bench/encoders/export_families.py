"""Export figures for every supported encoder family: parity with each source's own pipeline,
export time and graph size.

Each tiny checkpoint family of the test fixtures (``tests/support/tiny_image_checkpoints``,
``tests/support/tiny_text_checkpoints``: randomly initialised, real file layouts and processors)
is exported by ``models.encoders.export_encoders`` beside a fixed partner (image families with a
tiny sentence-transformers text encoder, text kinds with a tiny ViT), on the full parity corpus;
then the real default recipe's encoders (``models.recipes.fashion_mnist.default_encoders`` in a
child process: EfficientNet-Lite0 through the Python API, and all-MiniLM-L6-v2 through the
generic transformers text path with mean pooling and normalisation). Recorded per encoder:
the worst exact, reduced-scale and departure cosine with its input, the ONNX-against-torch
cosine, export seconds and graph bytes.

    python -m bench.encoders.export_families [--only NAME ...] [--skip-real]

Writes bench/results/export-encoders.json, rewrites the generated section of
docs/bring-your-own-encoders.md from it, and prints a table. Takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.encoders.export_families_doc import DOC, RESULTS, committed_sections, row, table
from bench.harness.generated_docs import write_sections
from bench.harness.paths import REPO_ROOT
from models.encoders.encoder_sources import ImageSource, TextSource
from models.encoders.export_encoders import PARITY_FILE, ExportOptions, export_encoders


def _text_kinds() -> dict[str, Callable[[Path], TextSource]]:
    from models.encoders.text_sources import load_text_source
    from tests.support.tiny_text_checkpoints import (
        write_tiny_bert,
        write_tiny_clip,
        write_tiny_sentence_transformer,
        write_tiny_siglip,
    )

    def st(pooling: str, **options: Any) -> Callable[[Path], TextSource]:
        return lambda d: load_text_source(
            write_tiny_sentence_transformer(d, pooling=pooling, **options)
        )

    kinds: dict[str, Callable[[Path], TextSource]] = {
        f"sentence-transformers {mode}": st(mode, normalize=True)
        for mode in ("cls", "lasttoken", "max", "mean", "mean_sqrt_len_tokens", "weightedmean")
    }
    kinds["sentence-transformers mean, lower-cased"] = st(
        "mean", normalize=True, do_lower_case=True
    )
    kinds["transformers BERT --pooling cls --normalize"] = lambda d: load_text_source(
        write_tiny_bert(d), pooling="cls", normalize=True
    )
    kinds["CLIP text tower"] = lambda d: load_text_source(write_tiny_clip(d))
    kinds["SigLIP text tower"] = lambda d: load_text_source(write_tiny_siglip(d))
    return kinds


def _image_families() -> dict[str, Callable[[Path], ImageSource]]:
    from models.encoders.hf_image_source import load_hf_image_source
    from tests.support.tiny_image_checkpoints import IMAGE_FAMILIES

    def family(writer: Callable[[Path], Path]) -> Callable[[Path], ImageSource]:
        return lambda directory: load_hf_image_source(writer(directory))

    return {name: family(writer) for name, writer in IMAGE_FAMILIES.items()}


def _entry(encoder: str, report: dict[str, Any]) -> dict[str, Any]:
    graph = report["graphs"][encoder]
    parity = report["parity"][encoder]
    return {
        "reference": parity["reference"],
        "parity": parity["summary"],
        "onnx_vs_torch_min_cosine": graph["min_cosine"],
        "export_seconds": graph["export_seconds"],
        "graph_bytes": graph["bytes"],
    }


def _run(
    name: str,
    image: Callable[[Path], ImageSource],
    text: Callable[[Path], TextSource],
    encoder: str,
    root: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    report = export_encoders(
        image(root / "image"), text(root / "text"), root / "out", ExportOptions(name)
    )
    entry = _entry(encoder, report)
    entry["total_seconds"] = round(time.perf_counter() - started, 1)
    return entry


def _real(root: Path) -> dict[str, Any]:
    """The default recipe's encoders, exported by the recipe's own module in a child process
    (the benchmarks never import the recipes); its report is read back from the bundle."""
    out = root / "out"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "models.recipes.fashion_mnist.default_encoders", "--out", str(out)],
        check=True,
        cwd=REPO_ROOT,
    )
    report = json.loads((out / PARITY_FILE).read_text(encoding="utf-8"))
    return {
        "image: EfficientNet-Lite0 (Python API)": _entry("image_encoder", report),
        "text: all-MiniLM-L6-v2 (transformers, mean, normalised)": _entry("text_encoder", report),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="families or kinds to run")
    parser.add_argument("--skip-real", action="store_true", help="skip the default recipe's")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    images, texts = _image_families(), _text_kinds()
    vit, st_mean = images["vit"], texts["sentence-transformers mean"]
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.encoders.export_families", *sys.argv[1:]]),
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
        },  # fmt: skip
        "image": {},
        "text": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, image in images.items():
            if args.only is None or name in args.only:
                results["image"][name] = _run(
                    name, image, st_mean, "image_encoder", Path(tmp) / name
                )
                print(row(f"image: {name}", results["image"][name]), flush=True)
        for name, text in texts.items():
            if args.only is None or name in args.only:
                key = name.replace(" ", "-").replace(",", "")
                results["text"][name] = _run(key, vit, text, "text_encoder", Path(tmp) / key)
                print(row(f"text: {name}", results["text"][name]), flush=True)
        if not args.skip_real:
            results["real"] = _real(Path(tmp) / "real")
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if args.out == RESULTS:
        write_sections(DOC, committed_sections())
    print(table(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
