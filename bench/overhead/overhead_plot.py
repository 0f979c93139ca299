"""docs/img/overhead.png: per system of the overhead benchmark, req/s and server CPU per request
(bars: medians; dots: the repeats), with the issue's CPU target marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from bench.overhead.overhead_summary import (  # noqa: E402
    CPU_MS_AT_MOST,
    FUSIONSERVE,
    completed,
    summarize,
)

COLOURS = {
    "fusionserve": "#1f77b4",
    "litserve": "#d62728",
    "bentoml": "#2ca02c",
    "ray": "#9467bd",
    "floor": "#7f7f7f",
}


def plot(results: dict[str, Any], path: Path) -> None:
    keys = list(results["systems"])
    summary = summarize(results["runs"], keys)
    labels = [results["systems"][key]["label"] for key in keys]
    fig, (rps_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 0.6 * len(keys) + 2.2), dpi=120)
    panels = (
        (rps_ax, "throughput_rps", "successful responses per second (higher is better)", 0),
        (cpu_ax, "cpu_ms_per_request", "server CPU per request, ms, whole process tree", 3),
    )
    for ax, figure, title, digits in panels:
        for row, key in enumerate(keys):
            colour = COLOURS.get(key, "grey")
            middle = summary["systems"][key][figure]["median"]
            values = [r[figure] for r in completed(results["runs"], key)]
            ax.scatter(values, [row] * len(values), color="black", s=12, zorder=3)
            if middle is not None:
                ax.barh(row, middle, color=colour, alpha=0.75, height=0.6)
                # Right of the bar and of every repeat's dot, so that no dot hides it.
                at = max([middle, *values])
                ax.text(at, row, f"  {middle:.{digits}f}", va="center", fontsize=8)
        ax.set_yticks(range(len(keys)), labels if ax is rps_ax else [""] * len(keys))
        ax.invert_yaxis()  # the first system on top
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
    target_of = results["systems"].get(FUSIONSERVE, {}).get("label", FUSIONSERVE)
    cpu_ax.axvline(
        CPU_MS_AT_MOST,
        color="black",
        ls="--",
        lw=1,
        label=f"issue 26's target for {target_of}: <= {CPU_MS_AT_MOST:g} ms",
    )
    cpu_ax.legend(fontsize=7, loc="best")
    plan = results["plan"]
    fig.suptitle(
        f"Tiny bundle, {plan['concurrency']} closed-loop clients, {plan['duration_s']:g} s "
        f"windows; bars: medians over {plan['repeats']} repeat(s), dots: each repeat; "
        f"{results['machine']['nproc']} CPU cores shared with the load generator",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
