"""The engines suite's summary: each engine's medians over rounds (rows/s steady and with
start-up), each Ray setup's ratio to the local engine on the same machine, the stage rates
and what they say about sizing, and the table the runner prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness.formatting import fixed
from bench.harness.statistics import median, ratio

# The sizing example the table works out: this many rows in this many hours.
EXAMPLE_ROWS = 10_000_000
EXAMPLE_HOURS = 8

ENGINES = {
    "local": "local engine (threads of one process)",
    "ray-1node": "Ray, one node started by the job",
    "ray-2nodes": "Ray, two nodes of 1 CPU each (two raylets)",
}


def summarize(runs: Sequence[dict[str, Any]], rates: dict[str, Any]) -> dict[str, Any]:
    """Medians per engine over ``runs`` (each with ``engine``, ``rows_per_s``,
    ``rows_per_s_with_startup`` and ``error``), ratios to the local engine, and the stage
    ``rates`` (``stage_rates.stage_rates``) with the cores per model CPU they imply."""
    engines: dict[str, Any] = {}
    for engine in ENGINES:
        mine = [run for run in runs if run["engine"] == engine]
        if not mine:
            raise ValueError(f"no {engine} runs")
        engines[engine] = {
            "rows_per_s": median(run["rows_per_s"] for run in mine),
            "rows_per_s_with_startup": median(run["rows_per_s_with_startup"] for run in mine),
        }
    local = engines["local"]
    for figures in engines.values():
        figures["over_local"] = ratio(figures["rows_per_s"], local["rows_per_s"])
        figures["over_local_with_startup"] = ratio(
            figures["rows_per_s_with_startup"], local["rows_per_s_with_startup"]
        )
    prepare = rates["prepare_rows_per_s_per_core"]
    model = rates["model_rows_per_s_per_cpu"]
    return {
        "engines": engines,
        "stage_rates": rates,
        "prepare_cores_per_model_cpu": ratio(model, prepare),
        "rows_in_error": sum(run["error"] for run in runs),
    }


def table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table."""
    rates = summary["stage_rates"]
    lines = [
        "| engine | rows/s (steady) | / local | rows/s (with start-up) | / local |",
        "| --- | --- | --- | --- | --- |",
    ]
    for engine, label in ENGINES.items():
        figures = summary["engines"][engine]
        lines.append(
            f"| {label} | {fixed(figures['rows_per_s'])} | {figures['over_local']:.3f} | "
            f"{fixed(figures['rows_per_s_with_startup'])} | "
            f"{figures['over_local_with_startup']:.3f} |"
        )
    lines += [
        "",
        f"stage rates ({rates['rows']} rows, one CPU each): preparation "
        f"{fixed(rates['prepare_rows_per_s_per_core'])} rows/s per core; the model "
        f"{fixed(rates['model_rows_per_s_per_cpu'])} rows/s per CPU (batches of "
        f"{rates['batch_size']}); so {summary['prepare_cores_per_model_cpu']:.2f} preparing "
        "cores keep one model CPU busy",
    ]
    lines.append("")
    lines.append(sizing_example(rates))
    if summary["rows_in_error"]:
        lines.append(f"warning: {summary['rows_in_error']} rows failed in the engine runs")
    return "\n".join(lines)


def sizing_example(rates: dict[str, Any]) -> str:
    """What ``EXAMPLE_ROWS`` rows in ``EXAMPLE_HOURS`` hours need at the measured rates."""
    needed = EXAMPLE_ROWS / (EXAMPLE_HOURS * 3600)
    prepare = needed / rates["prepare_rows_per_s_per_core"]
    model = needed / rates["model_rows_per_s_per_cpu"]
    return (
        f"e.g. {EXAMPLE_ROWS:,} rows in {EXAMPLE_HOURS} h is {needed:.0f} rows/s: "
        f"{prepare:.1f} preparing cores and {model:.1f} model CPUs at these rates, before "
        "Ray's own overhead (the Ray rows above against the local engine)"
    )
