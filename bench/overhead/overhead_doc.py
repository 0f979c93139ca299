"""The ``overhead`` section of docs/benchmarks.md (and docs/img/overhead.png), rendered from
the committed bench/results/overhead.json: per system req/s, p50/p99, server CPU per request
(medians and ranges by repeat), the 503s and other non-200 answers, and issue 15's targets
for the overhead-bound case, each met or missed with the figure it rests on.

``python -m bench.overhead.overhead_doc`` rewrites the section and the plot without re-running
anything; ``--check`` changes nothing and exits 1 when the section is stale.
``bench.overhead.overhead_benchmark`` does the same after a run unless ``--no-docs``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness.formatting import fixed
from bench.harness.generated_docs import GeneratedDoc
from bench.harness.paths import DOCS_DIR, RESULTS_DIR, read_results
from bench.overhead.overhead_summary import FLOOR, Spread, summarize

DOC = DOCS_DIR / "benchmarks.md"
SECTION = "overhead"
RESULTS = RESULTS_DIR / "overhead.json"
PLOT = DOCS_DIR / "img" / "overhead.png"


def _cell(figure: Spread, digits: int) -> str:
    """``median (min-max)``, or the median alone when the repeats agree to the digits shown."""
    if figure["median"] is None or figure["min"] is None or figure["max"] is None:
        return "-"
    low, high = fixed(figure["min"], digits), fixed(figure["max"], digits)
    shown = fixed(figure["median"], digits)
    return shown if low == high else f"{shown} ({low}-{high})"


def _answers(count: int, warmup: int) -> str:
    return f"{count} (warm-up: {warmup})"


def _table(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    above = summary["cpu_ms_above_floor"]
    lines = [
        "| System | req/s | p50 (ms) | p99 (ms) | Server CPU per request (ms) | CPU above the "
        "floor's (ms) | 503s | Other non-200 | Processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, s in summary["systems"].items():
        label = results["systems"][key]["label"]
        if s["failed"]:
            label += f" ({s['failed']} of {s['repeats'] + s['failed']} runs failed to start)"
        lines.append(
            f"| {label} | {_cell(s['throughput_rps'], 1)} | {_cell(s['p50_ms'], 1)} | "
            f"{_cell(s['p99_ms'], 1)} | {_cell(s['cpu_ms_per_request'], 3)} | "
            f"{'-' if key == FLOOR else fixed(above.get(key), 3)} | "
            f"{_answers(s['503'], s['503_warmup'])} | "
            f"{_answers(s['other_non_200'], s['other_non_200_warmup'])} | "
            f"{_cell(s['processes'], 0)} |"
        )
    return lines


def _contention_table(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    lines = [
        "| System | Load generator CPU per request (ms) | CPU outside the measured processes "
        "per window (CPU-s) | Start-up (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, s in summary["systems"].items():
        other = s["other_cpu_s"]
        outside = "-" if not other else _range(other, "", 2)
        lines.append(
            f"| {results['systems'][key]['label']} | "
            f"{_cell(s['client_cpu_ms_per_request'], 3)} | {outside} | "
            f"{_cell(s['startup_s'], 1)} |"
        )
    return lines


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _range(values: Sequence[float], suffix: str = "x", digits: int = 3) -> str:
    """``low to high`` (one value when they agree to the digits shown)."""
    if not values:
        return "-"
    low, high = f"{min(values):.{digits}f}{suffix}", f"{max(values):.{digits}f}{suffix}"
    return low if low == high else f"{low} to {high}"


def _targets(summary: dict[str, Any]) -> list[str]:
    by_repeat = summary["fusionserve_over_litserve_by_repeat"]
    within = {
        "FusionServe req/s / LitServe req/s": by_repeat["throughput_rps"],
        "FusionServe server CPU per request / LitServe's": by_repeat["cpu_ms_per_request"],
    }
    lines = [
        "| Target (issue 15) | Bound | Measured | Rests on | Verdict |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for target in summary["targets"]:
        name, value = target["name"], target["value"]
        if value is None:
            measured = "-"
        elif name in within:
            measured = _times(value)
        elif name == "FusionServe server CPU per request":
            measured = f"{value:.3f} ms"
        else:
            measured = str(value)
        rests_on = target["rests_on"]
        if within.get(name):
            rests_on += f"; within a repeat {_range(within[name])}"
        lines.append(
            f"| {name} | {target['bound']} | {measured} | {rests_on} | **{target['verdict']}** |"
        )
    return lines


_PIECES = {
    "multipart_parse_us": "Parsing the multipart body (the route's parser, within the form limits)",
    "image_header_us": "Reading the image's header (once per request)",
    "image_decode_us": "Decoding and preprocessing the image (resize, crop, normalise)",
    "policy_and_tokenise_us": "The request policy and tokenising the text",
    "models_batch_1_us": "The three models, one item alone (not in the sum)",
    "models_batch_8_per_item_us": "The three models, per item of a batch of 8",
    "answer_json_us": "Ranking the answer and encoding its JSON",
}


def _split(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """FusionServe's CPU per request: the work one request needs, and the rest."""
    split = results.get("cpu_split")
    total = summary["systems"].get("fusionserve", {}).get("cpu_ms_per_request", {})
    if not split or total.get("median") is None:
        return []
    total_us = 1000 * total["median"]
    lines = [
        "Where FusionServe's server CPU per request goes (`bench/overhead/cpu_split.py`: each "
        "piece of the work one request needs, timed alone on the same request in the "
        "benchmark's process after the runs, single-threaded, median of 7 rounds; the "
        "serving layer is what the server spends beyond their sum):",
        "",
        "| Piece | Microseconds per request |",
        "| --- | ---: |",
    ]
    lines += [f"| {_PIECES[key]} | {value:.1f} |" for key, value in split["pieces_us"].items()]
    lines += [
        f"| **The work, in all** | **{split['work_us']:.1f}** |",
        f"| Server CPU per request (median above) | {total_us:.1f} |",
        "| **The serving layer**: HTTP parsing, ASGI middleware and routing, asyncio tasks and "
        "futures, hand-offs between threads, metrics, logging, and the work itself running "
        "slower in a busy server than alone (the request-path profile below puts the image's "
        "decode at about twice its time alone) | "
        f"**{total_us - split['work_us']:.1f}** |",
        "",
    ]
    return lines


def _versions(machine: dict[str, Any]) -> str:
    parts = []
    for env, pins in machine["versions"].items():
        if isinstance(pins, dict):
            parts.append(f"{env}: " + ", ".join(f"{k} {v}" for k, v in pins.items()))
    return "; ".join(parts)


def render(results: dict[str, Any], plot_path: str = "img/overhead.png") -> str:
    """The section for ``results`` (an overhead.json), its plot linked at ``plot_path``."""
    summary = summarize(results["runs"], list(results["systems"]))
    machine, plan, request = results["machine"], results["plan"], results["request"]
    uvicorn = machine.get("uvicorn_main", {})
    dirty = " (with uncommitted changes under app/)" if machine.get("app_dirty") else ""
    threads = plan["intra_op_threads"]
    lines = [
        f"Measured by `{results['command']}` on {results['started']} "
        f"({results['wall_s'] / 60:.1f} minutes), {machine['nproc']} CPU cores "
        f"({machine['cpu_model']}), git commit `{machine['git_commit'][:12]}`{dirty}; every "
        "run is in [bench/results/overhead.json](../bench/results/overhead.json). Each system "
        f"serves `POST /classify` from the tiny bundle ({results['bundle']}) with "
        "FusionServe's own decode and pipeline code (the peers run the server modules of "
        "`bench/peers/` from their own venvs); the raw-ASGI floor "
        "(`bench/overhead/asgi_floor.py`) only reads the body and answers a fixed JSON, on "
        "uvicorn configured as `fusionserve serve` configures it "
        f"({uvicorn.get('http', '?')}, {uvicorn.get('loop', '?')}). "
        f"{plan['concurrency']} closed-loop clients post a {request['image']} "
        f"({request['image_bytes']} bytes) with one of {request['texts']} short texts "
        f"({request['body_bytes']}-byte multipart body). In each repeat ({plan['repeats']} in "
        "all) the systems, in an order rotated by one, are each started, warmed up "
        f"({plan['warmup_s']:g} s), measured for {plan['duration_s']:g} s and stopped.",
        "",
        "FusionServe runs with its default settings but for what the harness gives every "
        "system (`bench/harness/servers.py`: ONNX Runtime inter-op threads 1 and no spinning, "
        "FusionServe's defaults too; device cpu; log level warning) and ONNX Runtime intra-op "
        f"threads = {threads} in every system: the tiny models' operators are too small to "
        "split, so more threads could only add wake-ups, and it is the setting "
        "`bench.overhead.request_overhead` measures with.",
        "",
        "Medians over the repeats, (lowest-highest) by repeat. Server CPU per request: user + "
        "system CPU of the server's whole process tree (`/proc`) over the measured window, "
        "divided by the 200s answered in it. 503s and other non-200 answers are summed over "
        "the measured windows (warm-ups beside them).",
        "",
        *_table(results, summary),
        "",
        f"![Requests per second and server CPU per request, tiny bundle]({plot_path})",
        "",
        *_targets(summary),
        "",
        *_split(results, summary),
        f"The load generator runs on the same {machine['nproc']} cores. Beside each system: "
        "its CPU per request, the CPU used outside the measured processes during a window "
        "(from `/proc/stat`: kernel time for loopback networking, which no process is "
        "charged for, and anything else that ran; lowest-highest by repeat) and the time "
        "from start to the first answer:",
        "",
        *_contention_table(results, summary),
        "",
        f"Versions: Python {machine['versions']['python']}; {_versions(machine)}.",
    ]
    return "\n".join(lines)


def committed_sections(results_path: Path = RESULTS) -> dict[str, str]:
    """The ``overhead`` section of docs/benchmarks.md, from the committed results."""
    return {SECTION: render(read_results(results_path))}


def draw(results_path: Path = RESULTS, plot_path: Path = PLOT) -> None:
    """docs/img/overhead.png from the committed results."""
    from bench.overhead.overhead_plot import plot  # matplotlib: only when drawing

    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(read_results(results_path), plot_path)


GENERATED = GeneratedDoc(
    "python -m bench.overhead.overhead_doc",
    (__doc__ or "").split("\n\n")[0],
    DOC,
    committed_sections,
)


def write_docs() -> list[str]:
    """The plot and the section from the committed results; the names of changed sections."""
    draw()
    return GENERATED.write()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    code = GENERATED.main(arguments)
    if code == 0 and "--check" not in arguments:
        draw()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
