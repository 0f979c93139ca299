"""The memory sections of docs/operations.md, rendered from the committed results:
``decode-memory`` (bench/results/decode-memory.json and decode-instructions.json),
``memory-sizing`` (the warmed-up RSS there and the default settings) and ``allocators``
(bench/results/allocators/*.json).

``python -m bench.memory.memory_doc`` rewrites those sections without re-running anything;
``--check`` changes nothing and exits 1 when one of them is stale. The suite's runners
(``bench.memory.decode_memory``, ``bench.memory.decode_instructions``) do the same after a
run unless ``--no-docs``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.config.settings import Settings
from bench.harness.formatting import fixed
from bench.harness.generated_docs import GeneratedDoc, recorded_options
from bench.harness.paths import DOCS_DIR, RESULTS_DIR, read_results
from bench.harness.statistics import ratio
from bench.memory.decode_memory_table import by_concurrency, settle_s, status_counts
from bench.memory.near_cap_images import near_cap_side
from bench.memory.sizing_rule import MARGIN, worst_case_terms

DOC = DOCS_DIR / "operations.md"
MEMORY_RESULTS = RESULTS_DIR / "decode-memory.json"
INSTRUCTIONS_RESULTS = RESULTS_DIR / "decode-instructions.json"
ALLOCATORS_DIR = RESULTS_DIR / "allocators"
MB, MiB = 1e6, 2**20


def _link(path: str) -> str:
    return f"[{path}](../{path})"


def _times(value: float) -> str:
    """A stored ratio as the results file holds it: 1.034x, 0.9978x, 1.0x."""
    return f"{value}x"


def _answers(bursts: list[dict[str, Any]]) -> str:
    """Answers by HTTP status, and which formats got each status other than 200:
    ``32 x 200, 4 x 413 (webp)``."""
    counts: Counter[str] = Counter()
    cases: dict[str, list[str]] = {}
    for burst in bursts:
        for status, count in status_counts([burst]).items():
            code = status.split()[0]
            counts[code] += count
            if code != "200" and burst["case"] not in cases.setdefault(code, []):
                cases[code].append(burst["case"])
    return ", ".join(
        f"{count} x {code}" + (f" ({', '.join(cases[code])})" if code in cases else "")
        for code, count in sorted(counts.items())
    )


def _bursts_table(servers: dict[str, Any], settle: float) -> list[str]:
    labels = list(servers)
    header = "| N |" + "".join(
        f" {label}: peak RSS MB | {label}: RSS {settle:g} s after, MB | {label}: answers |"
        for label in labels
    )
    lines = [header, "| ---: |" + " ---: | ---: | --- |" * len(labels)]
    levels = {label: by_concurrency(server["bursts"]) for label, server in servers.items()}
    for level in sorted(set().union(*levels.values())):
        row = f"| {level} |"
        for label in labels:
            bursts = levels[label].get(level, [])
            if not bursts:
                row += " - | - | - |"
                continue
            peak = max(b["peak_rss_mb"] for b in bursts)
            settled = max(b["settled_rss_mb"] for b in bursts)
            row += f" {fixed(peak)} | {fixed(settled)} | {_answers(bursts)} |"
        lines.append(row)
    return lines


def _back(label: str, server: dict[str, Any]) -> str:
    times = [b["back_within_100mb_after_s"] for b in server["bursts"]]
    back = [t for t in times if t is not None]
    soonest = f", at most {max(back):g} s after the burst's last answer" if back else ""
    return f"{len(back)} of {len(times)} bursts (`{label}`{soonest})"


def _latency(latency: dict[str, Any], instructions: dict[str, Any]) -> list[str]:
    medians = "; ".join(
        f"`{label}` " + ", ".join(f"{fmt} {ms}" for fmt, ms in sorted(by_format.items()))
        for label, by_format in latency["median_ms"].items()
    )
    lines = [
        f"Normal photos ({latency['images']} of the benchmark's, decoded in-process by each "
        f"checkout; per format the median over {latency['rounds']} alternated runs of the "
        f"mean decode time, ms): {medians}."
    ]
    if "after_over_before" in latency:
        ratios = ", ".join(
            f"{fmt} **{_times(r)}**" for fmt, r in sorted(latency["after_over_before"].items())
        )
        lines.append(f"After / before (`decode_latency.after_over_before`): {ratios}.")
    photos = " and ".join(f"{n} {fmt}" for fmt, n in sorted(instructions["photos"].items()))
    counted = ", ".join(
        f"{fmt} **{_times(r)}**" for fmt, r in sorted(instructions["after_over_before"].items())
    )
    lines.append(
        f"In instructions, after / before ({_link('bench/results/decode-instructions.json')}"
        f", `after_over_before`; the first {photos} photos under callgrind): {counted}."
    )
    return lines


def render_decode_memory(memory: dict[str, Any], instructions: dict[str, Any]) -> str:
    """The ``decode-memory`` section: the bursts table, the warmed-up RSS, how soon memory
    came back, and the normal-photo decode times and instruction counts."""
    servers, settle = memory["servers"], settle_s(memory)
    bursts = [b for server in servers.values() for b in server["bursts"]]
    cases = list(dict.fromkeys(b["case"] for b in bursts))
    sizes = [b["file_bytes"] / MB for b in bursts]
    megapixels = near_cap_side(memory["max_pixels"]) ** 2 / MB
    warm = ", ".join(f"{fixed(s['warm_rss_mb'])} MB (`{label}`)" for label, s in servers.items())
    lines = [
        f"Measured on {memory['machine']['cpus']} cores (recorded command: "
        f"`{memory['command']}`; "
        f"{_link('bench/results/decode-memory.json')}). Each upload is one of {len(cases)} "
        f"files ({', '.join(f'`{c}`' for c in cases)}) of {min(sizes):.1f}-{max(sizes):.1f} "
        f"MB that decode to {megapixels:g} megapixels. Per N concurrent uploads, the worst "
        f"burst over the formats (`peak_rss_mb`, `settled_rss_mb` {settle:g} s after the "
        "burst's last answer) and the answers summed:",
        "",
        *_bursts_table(servers, settle),
        "",
        f"Warmed up at {warm}. `back_within_100mb_after_s`: RSS was back within 100 MB of "
        "the warmed-up figure after "
        + " and ".join(_back(label, server) for label, server in servers.items())
        + ".",
        "",
        *_latency(memory["decode_latency"], instructions),
    ]
    return "\n".join(lines)


def sizing_terms_mb(warm_rss_mb: float, settings: Settings) -> dict[str, float]:
    """The terms of a CPU replica's worst case (``bench.memory.sizing_rule``), in MB (10^6
    bytes), named as the doc names them."""
    terms = worst_case_terms(round(warm_rss_mb * MB), settings, cuda=False)
    names = ("warmed up", "text cache", "decodes", "waiting items", "bodies")
    return {name: value / MB for name, value in zip(names, terms.values(), strict=True)}


def render_sizing(memory: dict[str, Any], settings: Settings) -> str:
    """The ``memory-sizing`` section: the measured warmed-up RSS, and the sum with
    ``settings`` (the defaults, in the doc)."""
    warm = memory["servers"]["after"]["warm_rss_mb"]
    terms = sizing_terms_mb(warm, settings)
    named = " + ".join(
        fixed(value) if name == "warmed up" else f"{fixed(value)} {name}"
        for name, value in terms.items()
    )
    total_gb = MARGIN * sum(terms.values()) / 1000
    return (
        f"The warmed-up RSS of the default bundle on CPU is **{fixed(warm)} MB** (`warm_rss_mb` "
        f"of the `after` server in {_link('bench/results/decode-memory.json')}). With the "
        f"default settings on CPU: {MARGIN:g} x ({named}) MB = **{fixed(total_gb, 2)} GB**."
    )


def _baseline_setting(command: str) -> str:
    """What the ``before`` server ran with: its ``--baseline-env`` settings (a preloaded
    library by its file name), or nothing set."""
    settings = recorded_options(command, "--baseline-env")
    if not settings:
        return "nothing set: glibc keeps it"
    shown = []
    for setting in settings:
        name, _, value = setting.partition("=")
        shown.append(f"`{name}={os.path.basename(value) if name == 'LD_PRELOAD' else value}`")
    return ", ".join(shown)


def _worst(server: dict[str, Any]) -> float:
    return float(max(b["settled_rss_mb"] for b in server["bursts"]))


def _not_back(servers: Sequence[dict[str, Any]]) -> str:
    times = [b["back_within_100mb_after_s"] for s in servers for b in s["bursts"]]
    return f"{sum(t is None for t in times)} of {len(times)}"


def _span(values: Sequence[float]) -> str:
    low, high = fixed(min(values)), fixed(max(values))
    return low if low == high else f"{low}-{high}"


def _relative(latency: dict[str, Any]) -> str:
    """Normal-photo decode time, ``before`` over ``after``, per format: ``1.07x / 1.01x``."""
    medians = latency["median_ms"]
    return " / ".join(
        f"{fixed(ratio(medians['before'][fmt], medians['after'][fmt]), 2)}x"
        for fmt in sorted(medians["after"])
    )


def render_allocators(files: Mapping[str, dict[str, Any]]) -> str:
    """The ``allocators`` section: per results file (name -> results) the ``before`` server's
    setting, worst RSS after the bursts and decode times relative to the ``after`` (trimming)
    server's; then the trimming servers of every file together."""
    results = list(files.values())
    bursts = [b for r in results for s in r["servers"].values() for b in s["bursts"]]
    levels = sorted({b["concurrency"] for b in bursts})
    cases = list(dict.fromkeys(b["case"] for b in bursts))
    settle = {settle_s(r) for r in results}
    formats = sorted(results[0]["decode_latency"]["median_ms"]["after"])
    afters = [r["servers"]["after"] for r in results]
    lines = [
        f"Per file: bursts of {', '.join(map(str, levels))} concurrent near-cap uploads of "
        f"{len(cases)} formats ({', '.join(f'`{c}`' for c in cases)}); the worst "
        f"`settled_rss_mb` ({', '.join(f'{s:g}' for s in sorted(settle))} s after a burst), "
        "the bursts after which RSS was not back within 100 MB of the warmed-up figure, and "
        "the `decode_latency` medians, `before` over `after`.",
        "",
        "| Freed memory (the `before` server) | warmed up, MB | worst RSS after a burst, MB | "
        f"bursts not back | normal photo decode time, {' / '.join(formats)}, relative to "
        "trimming | file |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in sorted(files.items(), key=lambda item: -_worst(item[1]["servers"]["before"])):
        before = r["servers"]["before"]
        lines.append(
            f"| {_baseline_setting(r['command'])} | {fixed(before['warm_rss_mb'])} | "
            f"{fixed(_worst(before))} | {_not_back([before])} | {_relative(r['decode_latency'])} "
            f"| `{name}` |"
        )
    lines.append(
        "| **`malloc_trim` after large decodes and bursts** (the `after` server of each file) "
        f"| {_span([a['warm_rss_mb'] for a in afters])} | "
        f"**{_span([_worst(a) for a in afters])}** | {_not_back(afters)} | "
        f"**{' / '.join(['1.00x'] * len(formats))}** | all {len(files)} |"
    )
    return "\n".join(lines)


def committed_sections(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """Every memory section of docs/operations.md, from the results under ``results_dir``."""
    memory = read_results(results_dir / MEMORY_RESULTS.name)
    instructions = read_results(results_dir / INSTRUCTIONS_RESULTS.name)
    folder = results_dir / ALLOCATORS_DIR.name
    allocators = {path.name: read_results(path) for path in sorted(folder.glob("*.json"))}
    return {
        "decode-memory": render_decode_memory(memory, instructions),
        "memory-sizing": render_sizing(memory, Settings.model_construct()),
        "allocators": render_allocators(allocators),
    }


GENERATED = GeneratedDoc(
    "python -m bench.memory.memory_doc", (__doc__ or "").split("\n\n")[0], DOC, committed_sections
)
write_docs = GENERATED.write  # the suite's runner calls it after a run

if __name__ == "__main__":
    raise SystemExit(GENERATED.main())
