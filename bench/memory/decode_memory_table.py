"""The decode-memory results as a Markdown table; ``python -m bench.memory.decode_memory
--summary FILE`` prints a results file's. Also what reading a results file needs elsewhere
(bench.memory.memory_doc): its bursts by concurrency, statuses summed, its settle time."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.harness.generated_docs import recorded_option

SETTLE_S = 5.0  # the runner's default --settle-s: RSS is sampled this long after a burst


def settle_s(results: dict[str, Any]) -> float:
    """How long after each burst ``settled_rss_mb`` was taken: recorded since the runner
    writes it, else read from the recorded command (the runner's default if not given)."""
    if "settle_s" in results:
        return float(results["settle_s"])
    return float(recorded_option(results["command"], "--settle-s", str(SETTLE_S)))


def by_concurrency(bursts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The bursts at each concurrency, lowest first (one per format)."""
    levels: dict[int, list[dict[str, Any]]] = {}
    for burst in sorted(bursts, key=lambda b: int(b["concurrency"])):
        levels.setdefault(int(burst["concurrency"]), []).append(burst)
    return levels


def status_counts(bursts: list[dict[str, Any]]) -> Counter[str]:
    """Answers over ``bursts`` by status ("200", "503 memory_busy", ...)."""
    statuses: Counter[str] = Counter()
    for burst in bursts:
        statuses.update(burst["statuses"])
    return statuses


def summary_table(results: dict[str, Any]) -> str:
    """A Markdown table: per checkout and concurrency, the worst burst over the formats."""
    lines = [
        f"| checkout | concurrent | warmed up MB | peak MB (format) | {settle_s(results):g} s "
        "after, worst MB | not back within 100 MB | answers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, server in results["servers"].items():
        for level, bursts in by_concurrency(server["bursts"]).items():
            worst = max(bursts, key=lambda b: b["peak_rss_mb"])
            stuck = sum(b["back_within_100mb_after_s"] is None for b in bursts)
            answers = ", ".join(f"{n} x {s}" for s, n in sorted(status_counts(bursts).items()))
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
