"""The ``soak`` section of docs/operations.md, rendered from the committed results:
bench/results/soak.json (fresh texts), bench/results/soak-repeated-texts.json (a small pool
of texts, cycled) and, for the rate's share of saturation, bench/results/results.json.

``python -m bench.soak.soak_doc`` rewrites that section without re-running anything;
``--check`` changes nothing and exits 1 when it is stale. ``bench.soak.soak_benchmark`` does
the same after a run unless ``--no-docs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.harness.formatting import fixed
from bench.harness.generated_docs import GeneratedDoc, recorded_option
from bench.harness.paths import DOCS_DIR, RESULTS_DIR, read_results

DOC = DOCS_DIR / "operations.md"
SECTION = "soak"
RUNS = ("soak.json", "soak-repeated-texts.json")  # the committed runs, in the doc's order
PEER_RESULTS = RESULTS_DIR / "results.json"
FUSIONSERVE = "a"  # FusionServe with its default settings, in the peer benchmark's results
TEXTS = 10_000  # the runner's default --texts: distinct texts, cycled


def texts(results: dict[str, Any]) -> int:
    """How many distinct texts a run cycled: recorded since the runner writes it, else read
    from the recorded command (the runner's default if not given)."""
    if "texts" in results:
        return int(results["texts"])
    return int(recorded_option(results["command"], "--texts", str(TEXTS)))


def saturation(peers: dict[str, Any]) -> tuple[str, float]:
    """FusionServe's name and median saturation rate (req/s) in a peer benchmark's results."""
    return (
        peers["systems"][FUSIONSERVE]["label"],
        float(peers["summary"]["systems"][FUSIONSERVE]["saturation_rps"]),
    )


def _row(name: str, results: dict[str, Any], saturation_rps: float) -> str:
    memory, load = results["memory"], results["load"]
    cache = results["text_cache_entries"]
    share = f"{results['rate_rps'] / saturation_rps:.0%}"
    answers = ", ".join(f"{n} x {status}" for status, n in sorted(load["status_counts"].items()))
    verdict = "pass" if memory["passed"] else "**fail**"
    return (
        f"| {texts(results)} | {results['rate_rps']:g} ({share}) | {results['duration_s']:g} | "
        f"{fixed(memory['warm_rss_mb'])} / {fixed(memory['peak_rss_mb'])} / "
        f"{fixed(memory['end_rss_mb'])} | **{memory['growth_mb']:+.1f}** "
        f"(bar {memory['bar_mb']:g}: {verdict}) | {memory['trend_mb_per_min']:+g} | "
        f"{cache['start']} -> {cache['end']} | {answers} | "
        f"[{name}](../bench/results/{name}) |"
    )


def render(runs: Mapping[str, dict[str, Any]], system: str, saturation_rps: float) -> str:
    """The section: one row per soak run (results file name -> results), the rate also as a
    share of ``system``'s saturation rate ``saturation_rps`` in docs/benchmarks.md."""
    cpus = sorted({str(r["machine"]["cpus"]) for r in runs.values()})
    lines = [
        f"On {' / '.join(cpus)} cores; the rate's share is of the saturation rate of "
        f"{system} in [benchmarks.md](benchmarks.md) ({fixed(saturation_rps)} req/s, "
        "[bench/results/results.json](../bench/results/results.json)). Growth is "
        "`memory.growth_mb`: the last RSS sample less the first, after the warm-up.",
        "",
        "| Distinct texts | Rate, req/s (share of saturation) | Soak, s | RSS warmed up / peak "
        "/ end, MB | Growth, MB | Trend, MB/min | Text cache entries, start -> end | Answers "
        "| File |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    lines += [_row(name, results, saturation_rps) for name, results in runs.items()]
    return "\n".join(lines)


def committed_sections(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """The soak section of docs/operations.md, from the results under ``results_dir``."""
    runs = {name: read_results(results_dir / name) for name in RUNS}
    system, saturation_rps = saturation(read_results(results_dir / PEER_RESULTS.name))
    return {SECTION: render(runs, system, saturation_rps)}


GENERATED = GeneratedDoc(
    "python -m bench.soak.soak_doc", (__doc__ or "").split("\n\n")[0], DOC, committed_sections
)
write_docs = GENERATED.write  # the suite's runner calls it after a run

if __name__ == "__main__":
    raise SystemExit(GENERATED.main())
