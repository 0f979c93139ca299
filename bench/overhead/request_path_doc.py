"""The ``request-path`` section of docs/benchmarks.md: the request path before and after the
lean path of issue 26, rendered from the committed A/B runs (bench/results/request-overhead.json,
tiny bundle, with its profile split; bench/results/request-overhead-default.json, default
bundle) and the multipart parsers (bench/results/multipart-parsers.json).

``python -m bench.overhead.request_path_doc`` rewrites the section without re-running
anything; ``--check`` changes nothing and exits 1 when it is stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness.generated_docs import GeneratedDoc
from bench.harness.paths import DOCS_DIR, RESULTS_DIR, read_results
from bench.overhead.profile_split import WORK

DOC = DOCS_DIR / "benchmarks.md"
SECTION = "request-path"
TINY = RESULTS_DIR / "request-overhead.json"
DEFAULT = RESULTS_DIR / "request-overhead-default.json"
PARSERS = RESULTS_DIR / "multipart-parsers.json"

PARTS = {
    "multipart": "Parsing the multipart body",
    "image_header": "Reading the image's header",
    "image_decode": "Decoding and preprocessing the image",
    "tokenise": "The request policy and tokenising",
    "models": "The three models",
    "answer": "Building and encoding the answer",
    "http_server": "uvicorn: HTTP parsing and writing",
    "framework": "FastAPI and Starlette",
    "service_middleware": "The service's middleware and routes (request id, metrics, gates)",
    "core": "Serving core: routing, admission, the runner",
    "batcher": "The batcher",
    "metrics": "Prometheus metrics",
    "other": "asyncio's own work and anything unnamed",
}
PARSER_NAMES = {
    "starlette_form": "Starlette's `request.form`, to the image's bytes (the route before)",
    "service_parse_form": "The route's `parse_form` (python-multipart's parser, limits, fields "
    "checked and validated)",
    "python_multipart_bare": "python-multipart's bare parser, collecting the parts",
    "defnull_multipart": "defnull's `multipart` push parser (its own venv)",
}


def _split_table(tiny: dict[str, Any]) -> list[str]:
    before, after = tiny["split_us_medians"]["before"], tiny["split_us_medians"]["after"]
    lines = [
        "| Part of the request path | Before (us) | After (us) |",
        "| --- | ---: | ---: |",
    ]
    for key, label in PARTS.items():
        kind = "work" if key in WORK else "serving layer"
        lines.append(f"| {label} ({kind}) | {before[key]:.1f} | {after[key]:.1f} |")
    for key, label in (
        ("work", "The work a request needs"),
        ("serving_layer", "The serving layer"),
    ):
        lines.append(f"| **{label}** | **{before[key]:.1f}** | **{after[key]:.1f}** |")
    return lines


def _models_by_batcher(tiny: dict[str, Any]) -> list[str]:
    """The models' time per request as the batcher timed it, where the runs recorded it."""
    medians = tiny["medians"]
    if not all("models_us_by_batcher" in medians[label] for label in ("before", "after")):
        return []
    return [
        "The three models as the batcher times them (its `fusionserve_inference_duration_seconds` "
        "over each window, per request; wall time): "
        f"{medians['before']['models_us_by_batcher']:.1f} us before, "
        f"{medians['after']['models_us_by_batcher']:.1f} us after. Before, a batch ran in the "
        "inference thread, and its time was mostly that thread waiting for the GIL the event "
        "loop held; the tiny bundle's batches now run on the event loop "
        "(`FUSIONSERVE_INLINE_BATCH_MAX_MS`), where py-spy does not see ONNX Runtime's frames: "
        "the table's models part misses their time, which lands in the other parts of the "
        "loop's thread.",
        "",
    ]


# A same-run ratio this far past 1 in the wrong direction is called worse; closer is within
# what this machine's runs of the same code differ by.
NOISE = 0.05
# The default bundle's figures: (key in after_over_before, name, higher is better).
DEFAULT_FIGURES = (
    ("throughput_rps", "saturation", True),
    ("cpu_ms_per_request", "server CPU per request", False),
    ("single_p50_ms", "single-client p50", False),
    ("single_p99_ms", "single-client p99", False),
)


def default_verdict(default: dict[str, Any]) -> str:
    """Whether the default bundle got worse, from its same-run ratios."""
    ratios = default["after_over_before"]
    worse = [
        f"{name} ({ratios[key]:.3f}x)"
        for key, name, higher_is_better in DEFAULT_FIGURES
        if (ratios[key] < 1 - NOISE if higher_is_better else ratios[key] > 1 + NOISE)
    ]
    if worse:
        return f"worse by more than {NOISE:.0%}: {', '.join(worse)}."
    return (
        "where the models cost tens of milliseconds an item, the request path is a few "
        f"percent of it, and no figure is worse by more than {NOISE:.0%}."
    )


def _commit(results: dict[str, Any], key: str) -> str:
    commit = results.get(key)
    return f"git commit `{commit[:12]}`" if commit else "commit not recorded"


def _ratio(results: dict[str, Any], key: str) -> str:
    return f"{results['after_over_before'][key]:.3f}x"


def render(tiny: dict[str, Any], default: dict[str, Any], parsers: dict[str, Any]) -> str:
    medians, default_medians = tiny["medians"], default["medians"]
    parser_us = parsers["parsers_us"]
    lines = [
        "The classification routes take a lean path (`app/asgi/direct_routes.py`: past FastAPI's "
        "and Starlette's per-request layers, through the service's own ASGI middleware; the "
        "multipart body read by python-multipart's parser directly, `app/rest/multipart_body.py`; "
        "the answer encoded once, by orjson from plain values, `app/rest/rest_answers.py`; one "
        "request gate, `app/asgi/gate.py`; a request watched for its client leaving only once "
        "it has waited `FUSIONSERVE_DISCONNECT_WATCH_AFTER_S`, `app/asgi/disconnect.py`); "
        "small JPEGs are decoded whole by simplejpeg "
        "(`app/preprocess/jpeg_pixels.py`), a plain one's header read without Pillow "
        "(`app/preprocess/jpeg_header.py`) and its memory estimate remembered by header; the "
        "token ids of recent texts are kept "
        "(`app/preprocess/text.py`, as their embeddings are); Python's cyclic garbage "
        "collector runs about once a second instead of ~200 times "
        "(`FUSIONSERVE_GC_YOUNG_THRESHOLD`; requests leave no reference cycles to collect); "
        "and a bundle as fast as the tiny one runs its "
        "batches on the event loop (`app/core/batching.py`). `bench.overhead.request_overhead` "
        "runs this "
        f"checkout ({_commit(tiny, 'commit')}) and the one before those changes "
        f"({_commit(tiny, 'baseline_commit')}) in turn, {len(tiny['runs']['after'])} rounds "
        "each, and compares the medians.",
        "",
        f"Tiny bundle, {tiny['concurrency']} closed-loop clients, default settings "
        "([bench/results/request-overhead.json](../bench/results/request-overhead.json)): "
        f"server CPU per request {medians['after']['cpu_ms_per_request']:.3f} ms against "
        f"{medians['before']['cpu_ms_per_request']:.3f} ms "
        f"(**{_ratio(tiny, 'cpu_ms_per_request')}**), "
        f"{medians['after']['throughput_rps']:.1f} against "
        f"{medians['before']['throughput_rps']:.1f} req/s "
        f"(**{_ratio(tiny, 'throughput_rps')}**). Where each request's CPU went, from py-spy "
        "samples of every thread of the server during each measured window "
        "(`bench/overhead/profile_split.py`: each sample in the part its innermost named frame "
        "belongs to; a part's share of the samples times the CPU per request), medians over "
        "the rounds:",
        "",
        *_split_table(tiny),
        "",
        *_models_by_batcher(tiny),
        f"Default bundle, the suites' photos and titles, {default['concurrency']} closed-loop "
        "clients, then one client "
        "([bench/results/request-overhead-default.json]"
        "(../bench/results/request-overhead-default.json)): "
        f"{default_medians['after']['throughput_rps']:.1f} against "
        f"{default_medians['before']['throughput_rps']:.1f} req/s at saturation "
        f"({_ratio(default, 'throughput_rps')}), server CPU per request "
        f"{_ratio(default, 'cpu_ms_per_request')}, single-client p50 "
        f"{default_medians['after']['single_p50_ms']:.1f} against "
        f"{default_medians['before']['single_p50_ms']:.1f} ms "
        f"({_ratio(default, 'single_p50_ms')}) and p99 {_ratio(default, 'single_p99_ms')}: "
        f"{default_verdict(default)}",
        "",
        "Multipart parsers on the tiny bundle's request "
        f"({parsers['body_bytes']} bytes; `bench/overhead/multipart_parsers.py`, in one "
        "process, median of 7 rounds; "
        "[bench/results/multipart-parsers.json](../bench/results/multipart-parsers.json)):",
        "",
        "| Parser | Microseconds per request |",
        "| --- | ---: |",
        *(f"| {PARSER_NAMES[key]} | {parser_us[key]:.1f} |" for key in PARSER_NAMES),
        "",
        "python-multipart stays: it is the parser Starlette already depends on, and defnull's, "
        "whose module has the name of the shim python-multipart still installs, cannot share "
        "the service's environment with it.",
    ]
    return "\n".join(lines)


def committed_sections() -> dict[str, str]:
    """The ``request-path`` section of docs/benchmarks.md, from the committed results."""
    return {SECTION: render(read_results(TINY), read_results(DEFAULT), read_results(PARSERS))}


GENERATED = GeneratedDoc(
    "python -m bench.overhead.request_path_doc",
    (__doc__ or "").split("\n\n")[0],
    DOC,
    committed_sections,
)


def main(argv: Sequence[str] | None = None) -> int:
    return GENERATED.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
