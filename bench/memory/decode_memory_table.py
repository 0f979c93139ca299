"""The decode-memory results as a Markdown table; ``python -m bench.memory.decode_memory
--summary FILE`` prints a results file's."""

from __future__ import annotations

from collections import Counter
from typing import Any


def summary_table(results: dict[str, Any]) -> str:
    """A Markdown table: per checkout and concurrency, the worst burst over the formats."""
    lines = [
        "| checkout | concurrent | warmed up MB | peak MB (format) | 5 s after, worst MB | "
        "not back within 100 MB | answers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, server in results["servers"].items():
        levels = sorted({b["concurrency"] for b in server["bursts"]})
        for level in levels:
            bursts = [b for b in server["bursts"] if b["concurrency"] == level]
            worst = max(bursts, key=lambda b: b["peak_rss_mb"])
            statuses: Counter[str] = Counter()
            for burst in bursts:
                statuses.update(burst["statuses"])
            stuck = sum(b["back_within_100mb_after_s"] is None for b in bursts)
            answers = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
            lines.append(
                f"| {label} | {level} | {server['warm_rss_mb']} | {worst['peak_rss_mb']} "
                f"({worst['case']}) | {max(b['settled_rss_mb'] for b in bursts)} | "
                f"{stuck} of {len(bursts)} | {answers} |"
            )
    latency = results["decode_latency"]
    for fmt, ratio in latency.get("after_over_before", {}).items():
        medians = {label: m[fmt] for label, m in latency["median_ms"].items()}
        lines.append(f"\nnormal {fmt} photos, mean decode ms {medians}: after/before {ratio}")
    return "\n".join(lines)
