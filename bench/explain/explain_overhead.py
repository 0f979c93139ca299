"""The cost of ``explain``: ``Pipeline.run_items`` on the same batch with explain on and off.

In-process, no HTTP: batches of a sample PNG + its text, prepared once, run alternately with
and without explain (so that load from other processes hits both alike); medians per batch
size and their ratio. On a busy machine the difference of two noisy medians can be smaller
than the noise, so the extra work is also timed alone: the one fusion-head call on 2N rows
(null image, null text) that explain adds to a batch of N.

Run: ``python -m bench.explain.explain_overhead [--bundle models/default] [--rounds 60]``;
prints JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.config.settings import Settings
from app.core.engine import build_engine
from app.core.pipeline import Pipeline
from bench.harness.paths import REPO_ROOT
from bench.harness.statistics import median, ratio

SAMPLES = REPO_ROOT / "models" / "samples"


def _extra_head_call(pipeline: Pipeline, size: int) -> None:
    """What explain adds to a batch of ``size``: the head on 2 x size rows, then softmax."""
    manifest = pipeline.manifest
    present = np.arange(2 * size) >= size
    image = np.zeros((2 * size, manifest.image_encoder.embedding_dim), np.float32)
    text = np.zeros((2 * size, manifest.text_encoder.embedding_dim), np.float32)
    pipeline.probabilities(pipeline.head_scores(image, text, present, ~present))


def measure(
    pipeline: Pipeline, image: bytes, text: str, size: int, rounds: int
) -> dict[str, float]:
    """Median milliseconds of each run, alternated round by round, and the ratios."""
    batches = {
        explain: [pipeline.prepare(image, text, explain) for _ in range(size)]
        for explain in (False, True)
    }
    runs: dict[str, Callable[[], Any]] = {
        "off": functools.partial(pipeline.run_items, batches[False]),
        "on": functools.partial(pipeline.run_items, batches[True]),
        "extra_head_call": functools.partial(_extra_head_call, pipeline, size),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000.0)
    medians = {f"{name}_ms": median(t) for name, t in times.items()}
    return medians | {
        "ratio": ratio(medians["on_ms"], medians["off_ms"], 4),
        "extra_share": ratio(medians["extra_head_call_ms"], medians["off_ms"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.explain.explain_overhead", description=__doc__
    )
    parser.add_argument("--bundle", type=Path, default=Path("models/default"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    # No text cache: every run encodes its texts, as a stream of new requests would.
    settings = Settings(bundle_path=args.bundle, device="cpu", text_cache_size=0)
    pipeline = build_engine(settings).pipeline
    sample = json.loads((SAMPLES / "samples.json").read_text())[0]
    image = (SAMPLES / sample["file"]).read_bytes()
    results = {
        size: measure(pipeline, image, sample["text"], size, args.rounds) for size in args.sizes
    }
    print(json.dumps({"rounds": args.rounds, "batch_sizes": results}, indent=2))


if __name__ == "__main__":
    main()
