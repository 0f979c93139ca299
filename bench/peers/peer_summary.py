"""The peer benchmark's summary: medians across repeats, ratios, and issue 3's targets.

``summarize(results)`` reduces a session's raw runs (bench/results/results.json's ``raw``) to
the ``summary`` that the session stores and bench.peers.benchmarks_doc shows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.harness.procs import MB
from bench.harness.statistics import median_or_none, ratio_or_none

PEERS = ("d", "e", "f")
MB_KIB = MB / 1024  # the targets speak of MB (10^6 bytes); /proc reports KiB

# Issue 3's targets.
SAT_VS_INPROCESS = 0.85
SAT_VS_PEER = 1.5
SINGLE_GAP_MS = 2.0
OVERLOAD_P99_FACTOR = 3.0
RSS_DELTA_MB = 50.0


def _runs(results: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [r for r in results["raw"]["systems"] if r["system"] == key]


def _system_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]

    def med(phase: str, *path: str) -> float | None:
        values = []
        for run in ok:
            value: Any = run[phase]
            for part in path:
                value = value[part]
            if value is not None:
                values.append(float(value))
        return median_or_none(values)

    def non_200(phase: str) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for run in ok:
            counts.update({k: v for k, v in run[phase]["status_counts"].items() if k != "200"})
        return dict(counts)

    agreement = [r["agreement"] for r in runs if "agreement" in r]
    return {
        "runs": len(runs),
        "errors": [r["error"] for r in runs if "error" in r],
        "saturation_rps": med("saturation", "throughput_rps"),
        "saturation_p50_ms": med("saturation", "latency_ms", "p50"),
        "saturation_p99_ms": med("saturation", "latency_ms", "p99"),
        "saturation_non_200": non_200("saturation"),
        "open_throughput_rps": med("open", "throughput_rps"),
        "open_p50_ms": med("open", "latency_ms", "p50"),
        "open_p99_ms": med("open", "latency_ms", "p99"),
        "open_non_200": non_200("open"),
        "single_p50_ms": med("single", "latency_ms", "p50"),
        "single_server_p50_ms": median_or_none(
            [r["single"]["server_total_ms"]["p50"] for r in ok if r["single"]["server_total_ms"]]
        ),
        "server_cpu_ms_per_request": median_or_none(
            [r["saturation_cpu"]["server_cpu_ms_per_ok"] for r in ok if "saturation_cpu" in r]
        ),
        "client_cpu_ms_per_request": median_or_none(
            [r["saturation_cpu"]["client_cpu_ms_per_ok"] for r in ok if "saturation_cpu" in r]
        ),
        "startup_s": median_or_none([float(r["startup_s"]) for r in ok]),
        "rss_mib_tree": median_or_none(
            [r["rss_kib_after_warmup"]["tree"] / 1024 for r in ok if "rss_kib_after_warmup" in r]
        ),
        "processes_alive_at_end": all(r.get("alive_at_end", False) for r in ok),
        "agreement_max_abs_diff": max((a["max_abs_diff"] for a in agreement), default=None),
    }


def _inprocess_summary(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["raw"]["inprocess"]
    per_batch: dict[str, list[float]] = {}
    for run in runs:
        for row in run["throughput"]:
            per_batch.setdefault(str(row["batch_size"]), []).append(row["items_per_s"])
    best_cpu = [
        row["cpu_ms_per_item"]
        for r in runs
        for row in r["throughput"]
        if row["batch_size"] == r["best_batch_size"] and "cpu_ms_per_item" in row
    ]
    return {
        "best_items_per_s": median_or_none([r["best_items_per_s"] for r in runs]),
        "cpu_ms_per_item_at_best": median_or_none(best_cpu),
        "best_batch_sizes": [r["best_batch_size"] for r in runs],
        "items_per_s_by_batch_size": {k: median_or_none(v) for k, v in per_batch.items()},
        "single_item_median_ms": median_or_none([r["single_item"]["median_ms"] for r in runs]),
    }


def _overload_summary(results: dict[str, Any], open_p99: float | None) -> dict[str, Any] | None:
    record = results["raw"].get("overload")
    if not record or "run" not in record:
        return None
    run = record["run"]
    statuses = set(run["status_counts"])
    rejected = run["retry_after"]
    warm = record["rss_kib_after_warmup"]["main"]
    settled = record["rss_kib_settled"]["main"]
    p99 = run["latency_ms"]["p99"]
    return {
        "rate_rps": record["rate_rps"],
        "duration_s": record["duration_s"],
        "status_counts": run["status_counts"],
        "only_200_503": statuses <= {"200", "503"},
        "all_503_retry_after": rejected["503"] == rejected["503_with_retry_after"],
        "accepted_rps": run["throughput_rps"],
        "accepted_p50_ms": run["latency_ms"]["p50"],
        "accepted_p99_ms": p99,
        "p99_vs_open_p99": round(p99 / open_p99, 2) if p99 and open_p99 else None,
        "rss_mb_after_warmup": round(warm / MB_KIB, 1),
        "rss_mb_end": round(record["rss_kib_end"]["main"] / MB_KIB, 1),
        "rss_mb_settled": round(settled / MB_KIB, 1),
        "rss_delta_mb": round((settled - warm) / MB_KIB, 1),
        "alive_at_end": record.get("alive_at_end"),
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    keys = list(results["systems"])
    systems = {k: _system_summary(_runs(results, k)) for k in keys}
    inproc = _inprocess_summary(results)
    ours = systems.get("a", {})
    peers = {k: systems[k] for k in PEERS if k in systems and systems[k]["saturation_rps"]}
    best_peer = max(peers, key=lambda k: peers[k]["saturation_rps"], default=None)
    ratios: dict[str, Any] = {
        "saturation_vs_inprocess": ratio_or_none(
            ours.get("saturation_rps"), inproc["best_items_per_s"]
        ),
        "saturation_vs_best_peer": ratio_or_none(
            ours.get("saturation_rps"), peers[best_peer]["saturation_rps"] if best_peer else None
        ),
        "best_peer": best_peer,
        "batching_vs_no_batching": ratio_or_none(
            ours.get("saturation_rps"), systems.get("b", {}).get("saturation_rps")
        ),
        "open_p99_vs_peer": {
            k: ratio_or_none(ours.get("open_p99_ms"), systems[k]["open_p99_ms"]) for k in peers
        },
        "single_minus_inprocess_ms": (
            round(ours["single_p50_ms"] - inproc["single_item_median_ms"], 3)
            if ours.get("single_p50_ms") and inproc["single_item_median_ms"]
            else None
        ),
    }
    overload = _overload_summary(results, ours.get("open_p99_ms"))
    summary = {
        "systems": systems,
        "inprocess": inproc,
        "open_rate_rps": [c["open_rate_rps"] for c in results["raw"]["calibration"]],
        "calibration_saturation_rps": [
            c["saturation"]["throughput_rps"] for c in results["raw"]["calibration"]
        ],
        "ratios": ratios,
        "overload": overload,
        # CPU seconds used by other processes during each measurement (contention check;
        # includes kernel time for loopback networking that /proc attributes to no process).
        "other_cpu_s": {
            "inprocess": [r.get("other_cpu_s") for r in results["raw"]["inprocess"]],
            "saturation": {
                k: [
                    r["saturation_cpu"].get("other_cpu_s")
                    for r in _runs(results, k)
                    if "saturation_cpu" in r
                ]
                for k in keys
            },
        },
    }
    summary["targets"] = _targets(summary, results)
    return summary


def _target(name: str, measured: str, passed: bool | None) -> dict[str, Any]:
    verdict = "n/a" if passed is None else ("PASS" if passed else "MISS")
    return {"target": name, "measured": measured, "verdict": verdict}


def _targets(summary: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]]:
    ratios, systems = summary["ratios"], summary["systems"]
    out = []
    r = ratios["saturation_vs_inprocess"]
    out.append(
        _target(
            f"Saturation >= {SAT_VS_INPROCESS}x the in-process limit",
            f"{r}x",
            None if r is None else r >= SAT_VS_INPROCESS,
        )
    )
    r = ratios["saturation_vs_best_peer"]
    peer = ratios["best_peer"]
    label = results["systems"][peer]["label"] if peer else "-"
    out.append(
        _target(
            f"Saturation >= {SAT_VS_PEER}x the best peer",
            f"{r}x ({label})",
            None if r is None else r >= SAT_VS_PEER,
        )
    )
    ours = systems.get("a", {}).get("open_p99_ms")
    for key, ratio in ratios["open_p99_vs_peer"].items():
        theirs = systems[key]["open_p99_ms"]
        out.append(
            _target(
                f"p99 at 70% of our saturation rate below {results['systems'][key]['label']}'s",
                f"{ours} ms vs {theirs} ms ({ratio}x)",
                None if ratio is None else ratio < 1.0,
            )
        )
    gap = ratios["single_minus_inprocess_ms"]
    out.append(
        _target(
            f"Single-client median within {SINGLE_GAP_MS} ms of in-process",
            f"+{gap} ms",
            None if gap is None else gap <= SINGLE_GAP_MS,
        )
    )
    out.extend(_overload_targets(summary["overload"]))
    return out


def _overload_targets(overload: dict[str, Any] | None) -> list[dict[str, Any]]:
    if overload is None:
        return [_target("Overload at 2x saturation", "not run", None)]
    counts = ", ".join(f"{k}: {v}" for k, v in overload["status_counts"].items())
    ratio = overload["p99_vs_open_p99"]
    return [
        _target(
            "Overload: only 200 and 503 (with Retry-After)",
            counts,
            overload["only_200_503"] and overload["all_503_retry_after"],
        ),
        _target(
            f"Overload: accepted p99 within {OVERLOAD_P99_FACTOR:g}x the 70%-load p99",
            f"{overload['accepted_p99_ms']} ms ({ratio}x)",
            None if ratio is None else ratio <= OVERLOAD_P99_FACTOR,
        ),
        _target(
            f"Overload: RSS back within {RSS_DELTA_MB:g} MB of warmed-up",
            f"{overload['rss_delta_mb']:+} MB ({overload['rss_mb_after_warmup']} -> "
            f"{overload['rss_mb_settled']} MB)",
            abs(overload["rss_delta_mb"]) <= RSS_DELTA_MB,
        ),
    ]
