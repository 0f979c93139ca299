"""docs/img/throughput_vs_p99.png: per system, throughput against p99 latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

COLOURS = {"a": "#1f77b4", "b": "#7fb2e5", "d": "#d62728", "e": "#2ca02c", "f": "#9467bd"}


def plot(results: dict[str, Any], path: Path) -> None:
    summary = results["summary"]
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    for key, meta in results["systems"].items():
        colour = COLOURS.get(key, "grey")
        runs = [r for r in results["raw"]["systems"] if r["system"] == key and "error" not in r]
        for run in runs:  # every repeat, faint
            ax.scatter(
                run["saturation"]["latency_ms"]["p99"],
                run["saturation"]["throughput_rps"],
                color=colour,
                alpha=0.25,
                marker="o",
                s=25,
            )
            ax.scatter(
                run["open"]["latency_ms"]["p99"],
                run["open"]["throughput_rps"],
                color=colour,
                alpha=0.25,
                marker="^",
                s=25,
            )
        s = summary["systems"][key]
        if s["saturation_rps"] is None:
            continue
        ax.scatter(
            s["saturation_p99_ms"],
            s["saturation_rps"],
            color=colour,
            marker="o",
            s=80,
            edgecolors="black",
            label=f"({key}) {meta['label']}",
        )
        if s["open_p99_ms"] is not None:
            ax.scatter(
                s["open_p99_ms"],
                s["open_throughput_rps"],
                color=colour,
                marker="^",
                s=80,
                edgecolors="black",
            )
            ax.plot(
                [s["open_p99_ms"], s["saturation_p99_ms"]],
                [s["open_throughput_rps"], s["saturation_rps"]],
                color=colour,
                lw=1,
                alpha=0.6,
            )
    best = summary["inprocess"]["best_items_per_s"]
    if best:
        ax.axhline(best, color="black", ls="--", lw=1)
        # x in axes fraction, y in data units: the label stays put whatever the x scale.
        ax.text(
            0.01,
            best,
            f"(c) in-process limit {best:.1f} items/s (no HTTP)",
            va="bottom",
            fontsize=8,
            transform=ax.get_yaxis_transform(),
        )
    rate = summary["open_rate_rps"]
    rates = f"{min(rate):.1f}" if min(rate) == max(rate) else f"{min(rate):.1f}-{max(rate):.1f}"
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("p99 latency (ms, log scale)")
    ax.set_ylabel("successful responses per second")
    ax.set_title(
        "Saturation (circles, 32 closed-loop clients) and open loop at 70% of FusionServe's\n"
        f"saturation (triangles, {rates} req/s Poisson); "
        f"medians bold, repeats faint; {results['machine']['nproc']} CPU cores",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
