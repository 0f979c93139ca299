"""Instructions per normal-photo decode, this checkout against a baseline checkout.

Wall-clock decode times of two versions differ by a few percent from run to run on a shared
machine; instruction counts do not. Each checkout's ``ImageDecoder`` (called as the service
calls it, with a decode budget where the checkout has one) decodes the first 12 JPEG and 4
PNG photos of the benchmark's request set (640x480 to 1600x1200) in a child process under
``valgrind --tool=callgrind`` (address-space randomisation off, a fixed hash seed, the median
of 3 runs); the same child decoding none of them (imports and one warm-up decode only) is
subtracted. Needs valgrind (Debian: ``apt-get install valgrind``) and util-linux's setarch.

    python -m bench.memory.decode_instructions --baseline-root /tmp/fusionserve-before

Writes bench/results/decode-instructions.json, then, unless ``--no-docs``, rewrites the memory
sections of docs/operations.md from the committed results (bench.memory.memory_doc); about
12 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness.paths import REPO_ROOT, RESULTS_DIR
from bench.harness.payloads import build_requests
from bench.harness.statistics import median, ratio
from bench.memory.decoder_child import DECODER_SETUP
from bench.memory.memory_doc import write_docs

RESULTS = RESULTS_DIR / "decode-instructions.json"
PHOTOS = {"JPEG": 12, "PNG": 4}
REPEATS = 3
# One warm-up decode of a photo of format argv[3], then the first argv[4] photos of it.
CHILD = (
    DECODER_SETUP
    + """
images = [data for data, fmt in images if fmt == sys.argv[3]]
decode(images[0])
for data in images[: int(sys.argv[4])]:
    decode(data)
"""
)


def instructions(root: Path, photos: Path, image_format: str, count: int) -> int:
    """Median of ``REPEATS`` counts: even with a fixed hash seed and without address-space
    randomisation (``setarch -R``), counts vary by about 0.05% from run to run."""
    command = [
        "setarch",
        platform.machine(),
        "-R",
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        CHILD,
        str(root),
        str(photos),
        image_format,
        str(count),
    ]
    # A fixed hash seed: string hashing (and so dict layouts) otherwise varies per run.
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0"}
    counts = []
    for _ in range(REPEATS):
        done = subprocess.run(
            command, env=env, cwd=root, capture_output=True, text=True, check=True
        )
        match = re.search(r"Collected : (\d+)", done.stderr)
        assert match is not None, done.stderr[-2000:]
        counts.append(int(match.group(1)))
    return int(median(counts, digits=None))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory.decode_instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--baseline-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/operations.md's sections"
    )
    args = parser.parse_args()
    requests = build_requests(images=48, texts=200)
    images = [(part.data, part.image_format) for part in requests.images]
    roots = {"before": args.baseline_root.resolve(), "after": REPO_ROOT}
    per_photo: dict[str, dict[str, float]] = {label: {} for label in roots}
    with tempfile.NamedTemporaryFile(suffix=".pickle") as photos:
        photos.write(pickle.dumps(images))
        photos.flush()
        for label, root in roots.items():
            for image_format, count in PHOTOS.items():
                base = instructions(root, Path(photos.name), image_format, 0)
                total = instructions(root, Path(photos.name), image_format, count)
                per_photo[label][image_format] = (total - base) / count
                print(f"[{label}] {image_format}: {per_photo[label][image_format]:,.0f} per photo")
    ratios = {f: ratio(per_photo["after"][f], per_photo["before"][f], 4) for f in PHOTOS}
    results = {"photos": PHOTOS, "instructions_per_photo": per_photo, "after_over_before": ratios}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"after/before: {ratios}; wrote {args.out}")
    if not args.no_docs:  # from the committed results: a run written elsewhere changes nothing
        print(f"docs/operations.md sections rewritten: {write_docs() or 'none'}")


if __name__ == "__main__":
    main()
