"""The variants suite's summary: medians over rounds and repeats, and the ratios int8/fp32
and explain/plain, from bench/results/variants.json's raw runs."""

from __future__ import annotations

from typing import Any

from bench.harness.statistics import median_or_none, ratio_or_none

BUNDLES = ("fp32", "int8")
CONFIGS = ("fp32", "int8", "fp32_explain")  # HTTP: (bundle, explain on every request)
RATIO_DIGITS = 4


def summarize_inprocess(data: dict[str, Any]) -> dict[str, Any]:
    pipe: dict[str, dict[str, float | None]] = {}
    for name in BUNDLES:
        sizes = sorted({r["batch_size"] for r in data["pipeline"]})
        pipe[name] = {
            str(b): median_or_none(
                [
                    r["items_per_s"]
                    for r in data["pipeline"]
                    if r["bundle"] == name and r["batch_size"] == b
                ]
            )
            for b in sizes
        }
    encoders: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in data["encoders"]:
        encoders.setdefault(r["encoder"], {}).setdefault(r["bundle"], {})
    for encoder, by_bundle in encoders.items():
        for name in by_bundle:
            rows = [r for r in data["encoders"] if r["encoder"] == encoder and r["bundle"] == name]
            sizes = sorted({r["batch_size"] for r in rows})
            by_bundle[name] = {
                str(b): median_or_none([r["items_per_s"] for r in rows if r["batch_size"] == b])
                for b in sizes
            }
    return {
        "pipeline_items_per_s": pipe,
        "pipeline_ratio_int8_fp32": {
            b: ratio_or_none(pipe["int8"][b], v, RATIO_DIGITS) for b, v in pipe["fp32"].items()
        },
        "encoder_items_per_s": encoders,
        "encoder_ratio_int8_fp32": {
            encoder: {b: ratio_or_none(v["int8"][b], f, RATIO_DIGITS) for b, f in v["fp32"].items()}
            for encoder, v in encoders.items()
        },
        "other_cpu_s_median": median_or_none([r["other_cpu_s"] for r in data["pipeline"]]),
    }


def _http_point(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    return {
        "throughput_rps": median_or_none([r["saturation"]["throughput_rps"] for r in runs]),
        "p50_ms": median_or_none([r["saturation"]["latency_ms"]["p50"] for r in runs]),
        "p99_ms": median_or_none([r["saturation"]["latency_ms"]["p99"] for r in runs]),
        "single_p50_ms": median_or_none([r["single"]["latency_ms"]["p50"] for r in runs]),
        "other_cpu_s": median_or_none([r["saturation"]["other_cpu_s"] for r in runs]),
    }


def _http_ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    return {
        key: ratio_or_none(a[key], b[key], RATIO_DIGITS)
        for key in ("throughput_rps", "p50_ms", "p99_ms", "single_p50_ms")
    }


def summarize_http(runs: list[dict[str, Any]]) -> dict[str, Any]:
    points = {c: _http_point([r for r in runs if r["config"] == c]) for c in CONFIGS}
    per_repeat = []
    for repeat in sorted({r["repeat"] for r in runs}):
        got = {r["config"]: _http_point([r]) for r in runs if r["repeat"] == repeat}
        per_repeat.append(
            {
                "repeat": repeat,
                "int8_vs_fp32": _http_ratios(got["int8"], got["fp32"]),
                "explain_vs_plain": _http_ratios(got["fp32_explain"], got["fp32"]),
            }
        )
    return {
        "medians": points,
        "int8_vs_fp32": _http_ratios(points["int8"], points["fp32"]),
        "explain_vs_plain": _http_ratios(points["fp32_explain"], points["fp32"]),
        "per_repeat": per_repeat,
    }
