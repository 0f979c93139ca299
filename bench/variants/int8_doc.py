"""The benchmark section of docs/int8.md, rendered from bench/results/variants.json.

``python -m bench.variants.int8_doc [bench/results/variants.json]`` rewrites that section from a
results file without re-running anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.harness.formatting import fixed
from bench.harness.paths import DOCS_DIR, RESULTS_DIR
from models.reporting.doc_sections import replace_section

DOC = DOCS_DIR / "int8.md"
SECTION = "benchmark"
TITLES = {
    "fp32": "fp32 (`models/default`)",
    "int8": "int8 (`models/default-int8`)",
    "fp32_explain": "fp32, `explain=true` on every request",
}


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _others(machine: dict[str, Any]) -> str:
    busy, before = machine["other_cores_busy"], machine["loadavg_before"][0]
    if busy < 0.05:  # CPU accounting is only that precise (negative: none at all)
        return (
            f"Other processes used no measurable CPU while it ran ({busy:+.2f} cores on "
            f"average; load average {before} just before): the machine was otherwise idle."
        )
    return (
        f"While it ran, other processes kept **{busy:.2f} cores** busy on average (load "
        f"average {before} just before): read the ratios with that noise in mind."
    )


def _inprocess(s: dict[str, Any]) -> list[str]:
    pipe, ratio = s["pipeline_items_per_s"], s["pipeline_ratio_int8_fp32"]
    lines = [
        "| Batch size | fp32 items/s | int8 items/s | int8 / fp32 |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {b} | {fixed(pipe['fp32'][b])} | {fixed(pipe['int8'][b])} | **{_x(ratio[b])}** |"
        for b in pipe["fp32"]
    ]
    lines += [
        "",
        "Models alone, on items decoded and tokenised beforehand (no text cache): each "
        "encoder, and the model pipeline (`Pipeline.run`: both encoders and the fusion head).",
        "",
        "| Models alone | Batch size | fp32 items/s | int8 items/s | int8 / fp32 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for encoder, by_bundle in s["encoder_items_per_s"].items():
        for b, fp32 in by_bundle["fp32"].items():
            lines.append(
                f"| {encoder.replace('_', ' ')} | {b} | {fixed(fp32)} | "
                f"{fixed(by_bundle['int8'][b])} | {_x(s['encoder_ratio_int8_fp32'][encoder][b])} |"
            )
    return lines


def _http(s: dict[str, Any], concurrency: int) -> list[str]:
    m = s["medians"]
    lines = [
        f"| Server (closed loop, {concurrency} clients) | Saturation req/s | p50 / p99 ms "
        "| Single-client p50 ms | Other processes' CPU s (at saturation) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for config, title in TITLES.items():
        p = m[config]
        lines.append(
            f"| {title} | {fixed(p['throughput_rps'])} | {fixed(p['p50_ms'], 0)} / "
            f"{fixed(p['p99_ms'], 0)} | {fixed(p['single_p50_ms'])} | {fixed(p['other_cpu_s'])} |"
        )
    int8, explain = s["int8_vs_fp32"], s["explain_vs_plain"]
    per_repeat = "; ".join(
        f"repeat {r['repeat']}: int8 {_x(r['int8_vs_fp32']['throughput_rps'])}, explain "
        f"{_x(r['explain_vs_plain']['throughput_rps'])}"
        for r in s["per_repeat"]
    )
    return [
        *lines,
        "",
        f"- int8 / fp32: throughput **{_x(int8['throughput_rps'])}**, p50 "
        f"{_x(int8['p50_ms'])}, p99 {_x(int8['p99_ms'])}, single-client p50 "
        f"{_x(int8['single_p50_ms'])}",
        f"- explain / plain (fp32): throughput **{_x(explain['throughput_rps'])}**, p50 "
        f"{_x(explain['p50_ms'])}, p99 {_x(explain['p99_ms'])}, single-client p50 "
        f"{_x(explain['single_p50_ms'])}",
        f"- Throughput ratios per repeat (the three servers ran back to back): {per_repeat}",
    ]


def render(results: dict[str, Any]) -> str:
    plan, machine, summary = results["plan"], results["machine"], results["summary"]
    lines = [
        f"Measured by `{results['command']}` on {results['started']} "
        f"({results['wall_s'] / 60:.1f} min; git commit `{machine['git_commit'][:12]}`; "
        f"{machine['nproc']} cores, {machine['cpu_model']}). Raw runs: "
        "[bench/results/variants.json](../bench/results/variants.json). "
        f"{_others(machine)}",
        "",
        f"**In-process** (decode pool + `Pipeline.run`, no HTTP; medians of {plan['rounds']} "
        f"rounds of {plan['duration_s']:g} s per bundle and batch size, the bundles alternated):",
        "",
        *_inprocess(summary["inprocess"]),
        "",
    ]
    if "http" in summary:
        lines += [
            f"**HTTP** (`fusionserve serve`, medians of {plan['repeats']} repeats, the order "
            f"rotated each repeat; {plan['saturation_s']:g} s at saturation, then "
            f"{plan['single_s']:g} s of a single client):",
            "",
            *_http(summary["http"], plan["concurrency"]),
        ]
    return "\n".join(lines)


def write_doc(results: dict[str, Any]) -> None:
    replace_section(DOC, SECTION, render(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.variants.int8_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS_DIR / "variants.json")
    args = parser.parse_args()
    write_doc(json.loads(args.results.read_text()))
    print(f"wrote the {SECTION!r} section of {DOC}")


if __name__ == "__main__":
    main()
