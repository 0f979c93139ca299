"""Where a server's CPU goes under load, by profile: py-spy samples every thread of the server
while the load runs, and each sample is put in one part of the request path by the innermost
frame that names one (``PARTS``, first match from the leaf up). Multiplied by the server's
CPU per request, a part's share of the samples is its microseconds per request.

The parts are the work a request needs (multipart parsing, the image's header and decoding,
tokenising, the models, the answer's JSON), and the serving layer around it (the HTTP server,
the framework, the service's middleware, its core and batcher, metrics, asyncio's own work).

    python -m bench.overhead.profile_split --pid PID --seconds 10     # prints the split

``bench.overhead.request_overhead --profile`` records it beside each of its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# (part, markers): a frame belongs to the first part one of whose markers it contains.
# Frames look like "function (path/to/file.py:line)". The markers name the modules of both
# layouts of app/: its packages (app/core, app/asgi, app/rest...) and the flat modules and
# app/api of the commits before the split (an A/B against one of those, ad55cdf the last
# before issue 26's work, splits its samples alike).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("models", ("onnxruntime", "Pipeline.run_items", "Pipeline.fuse", "encode_images")),
    (
        "image_decode",
        (
            "ImageDecoder.decode",
            "ImageDecoder._decode",
            "ImageDecoder._to_array",
            "ImageDecoder._resize_crop",
            "PIL/",
        ),
    ),
    ("image_header", ("ImageDecoder.open", "OpenedImage", "decode_budget", "decode_estimate")),
    ("tokenise", ("TextTokenizer", "clean_text", "request_policy", "text_cache", "tokenizers")),
    (
        "multipart",
        (
            "multipart",
            "formparsers",
            "app/rest/forms.py",
            "app/api/forms.py",
            "Request._get_form",
            "UploadFile",
            "tempfile",
        ),
    ),
    ("answer", ("rest_answers", "rest_schemas", "json_response", "pydantic", "jsonable")),
    ("batcher", ("app/core/batching.py", "app/batching.py")),
    (
        "core",
        (
            "app/core/admission.py",
            "app/core/registry.py",
            "app/core/serving_core.py",
            "app/core/model_runner.py",
            "app/core/lifecycle.py",
            "app/memory/memory_budget.py",
            "app/memory/memory_trim.py",
            "app/admission.py",
            "app/registry.py",
            "app/serving_core.py",
            "app/model_runner.py",
            "app/lifecycle.py",
            "app/memory_budget.py",
            "app/memory_trim.py",
        ),
    ),
    (
        "metrics",
        (
            "prometheus",
            "app/observability/metrics.py",
            "http_metrics",
            "app/core/observer.py",
            "app/metrics.py",
            "app/observer.py",
        ),
    ),
    ("http_server", ("uvicorn/", "httptools")),
    ("framework", ("fastapi/", "starlette/")),
    ("service_middleware", ("app/asgi/", "app/rest/", "app/oip/", "app/api/")),
)
WORK = ("models", "image_decode", "image_header", "tokenise", "multipart", "answer")
OTHER = "other"  # asyncio's own work, the event loop, threading, anything unnamed


def part_of(frames: list[str]) -> str:
    """The part a sample (its frames, outermost first) belongs to."""
    for frame in reversed(frames):
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                return part
    return OTHER


def split(raw: str) -> dict[str, float]:
    """Each part's share of the samples in py-spy's raw output (``stack;frames count``
    lines; the first frame names the thread)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counts[part_of(stack.split(";")[1:])] += int(count)
    total = sum(counts.values())
    if not total:
        return {}
    return {part: counts[part] / total for part in (*(p for p, _ in PARTS), OTHER)}


def per_request_us(shares: dict[str, float], cpu_ms_per_request: float) -> dict[str, float]:
    """Each part's microseconds per request, and the work and serving-layer totals."""
    parts = {part: round(share * cpu_ms_per_request * 1000, 1) for part, share in shares.items()}
    work = round(sum(us for part, us in parts.items() if part in WORK), 1)
    return {**parts, "work": work, "serving_layer": round(sum(parts.values()) - work, 1)}


def py_spy() -> str | None:
    """py-spy's command (the bench extra installs it), or None."""
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


@dataclass(frozen=True)
class Recording:
    process: subprocess.Popen[bytes]
    path: Path


def record(pid: int, seconds: float, rate: int = 250) -> Recording | None:
    """Start sampling ``pid`` (every thread, idle ones left out) for ``seconds``; None when
    py-spy is missing. ``finish`` waits for it and returns the split."""
    command = py_spy()
    if command is None:
        return None
    handle, name = tempfile.mkstemp(suffix=".txt")
    os.close(handle)
    args = [command, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate)]
    args += ["-f", "raw", "-o", name, "--nonblocking", "-t"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return Recording(process, Path(name))


def finish(recording: Recording | None) -> dict[str, float]:
    """The split a ``record`` made (empty when it could not sample: no py-spy, or no
    permission to read the server's memory)."""
    if recording is None:
        return {}
    _, errors = recording.process.communicate(timeout=120)
    try:
        if recording.process.returncode != 0:
            print(f"[profile] py-spy failed: {errors.decode(errors='replace')[-300:]}")
            return {}
        return split(recording.path.read_text(errors="replace"))
    finally:
        recording.path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.profile_split", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    shares = finish(record(args.pid, args.seconds))
    print(json.dumps({part: round(share, 4) for part, share in shares.items()}, indent=1))


if __name__ == "__main__":
    main()
