"""docs/gpu.md's tables and verdicts of steps (a)-(d), each from its step's results. Every
verdict names the figures it rests on, all measured in the same run."""

from __future__ import annotations

from typing import Any

from bench.harness.formatting import fixed


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**missed**")


def _non_200(counts: dict[str, int]) -> str:
    other = {status: n for status, n in counts.items() if status != "200"}
    return ", ".join(f"{n} x {status}" for status, n in sorted(other.items())) or "0"


def _percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def scaling_lines(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    lines = [
        f"{result['clients_per_worker']} closed-loop clients per worker for "
        f"{result['duration_s']:g} s each, {result['request']}; settings "
        + ", ".join(f"`{k}={v}`" for k, v in result["settings"].items())
        + ".",
        "",
        "| Workers | req/s | x one worker | Efficiency | p50 (ms) | p99 (ms) | Server CPU per "
        "request (ms) | Server cores busy | Load generator busy | Machine cores busy | Non-200 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        latency, loadgen = run["latency_ms"], run["loadgen"]
        lines.append(
            f"| {run['workers']} | {fixed(run['throughput_rps'])} | {fixed(run['speedup'], 2)} | "
            f"{fixed(run['efficiency'], 2)} | {fixed(latency['p50'])} | {fixed(latency['p99'])} | "
            f"{fixed(run['server_cpu_ms_per_request'], 3)} | "
            f"{fixed(run['server_cores_busy'], 2)} | "
            f"{_percent(loadgen['busy_share'], 0)} of {loadgen['processes']} | "
            f"{fixed(run['machine_busy_cores'], 2)} | {_non_200(run['status_counts'])} |"
        )
    most = max(runs, key=lambda run: run["workers"])
    one = next((run for run in runs if run["workers"] == 1), None)
    met = most["target_met"] or most["loadgen_bound"]
    bound = "was" if most["loadgen_bound"] else "was not"
    lines += [
        "",
        f"Target: {most['workers']} workers >= {result['target_efficiency']:g} x "
        f"{most['workers']} x one worker's req/s, or limited by the load generator: "
        f"{verdict(met if one else None)}. {most['workers']} workers answered "
        f"{fixed(most['throughput_rps'])} req/s = {fixed(most['efficiency'], 2)} x "
        f"{most['workers']} x one worker's {fixed(one['throughput_rps'] if one else None)} "
        f"req/s; its load generator was busy {_percent(most['loadgen']['busy_share'], 0)} of its "
        f"{most['loadgen']['processes']} processes' time, so it {bound} the limit "
        "(the line is 85%).",
    ]
    return lines


def _saturation_rows(result: dict[str, Any]) -> list[str]:
    lines = [
        "| Bundle | Decoder | Requests | req/s | p50 (ms) | p99 (ms) | Non-200 | Load generator "
        "busy |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for config in result["configs"]:
        name = f"| {config['bundle']} | {config['decoder']} |"
        if "runs" not in config:
            why = config.get("skipped") or config.get("error", "?")
            lines.append(f"{name} - | not measured: {' '.join(str(why).split())[:160]} | | | | |")
            continue
        for fmt, run in config["runs"].items():
            latency = run["latency_ms"]
            lines.append(
                f"{name} {fmt} | {fixed(run['throughput_rps'])} | {fixed(latency['p50'])} | "
                f"{fixed(latency['p99'])} | {_non_200(run['status_counts'])} | "
                f"{_percent(run['loadgen']['busy_share'], 0)} |"
            )
    return lines


def _ratio_lines(comparisons: dict[str, Any]) -> list[str]:
    lines = []
    for title, key in (
        ("GPU over CPU decoding", "gpu_over_cpu_decoding"),
        ("fp16 over fp32", "fp16_over_fp32"),
    ):
        cells = [
            f"{group} {fmt} {fixed(value, 2)}x"
            for group, by_format in comparisons[key].items()
            for fmt, value in by_format.items()
            if value is not None
        ]
        lines.append(f"- {title} (req/s): {', '.join(cells) if cells else 'not measured'}.")
    return lines


def _bundles(result: dict[str, Any]) -> dict[str, str]:
    return {config["bundle"]: config["path"] for config in result["configs"]}


def saturation_lines(result: dict[str, Any]) -> list[str]:
    mix = result["requests"]
    comparisons = result["comparisons"]
    lines = [
        f"The real-photo request set: {mix['images']} photos ({mix['jpeg']} JPEG, {mix['png']} "
        f"PNG; {', '.join(mix['dimensions'])}), {result['concurrency']} closed-loop clients; "
        "bundles "
        + ", ".join(f"{name} `{path}`" for name, path in _bundles(result).items())
        + "; settings "
        + ", ".join(f"`{k}={v}`" for k, v in result["settings"].items())
        + ".",
        "",
        *_saturation_rows(result),
        "",
        "Side by side, same run:",
        "",
        *_ratio_lines(comparisons),
        "",
    ]
    best = comparisons["best_jpeg_gpu_rps"]
    lines.append(
        f"Target: >= {comparisons['jpeg_target_rps']:,.0f} req/s of JPEG photos with GPU "
        f"decoding: {verdict(comparisons['jpeg_target_met'])}"
        + (f" (best: {fixed(best)} req/s)." if best is not None else " (no GPU decoding run).")
        + " PNG uploads always decode on the CPU: their rows are separate."
    )
    return lines


def memory_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"The {result['bundle']} default bundle with the {result['decoder']} decoder: "
        f"{result['warmup_requests']:,} warm-up requests, then {result['requests']:,} more, "
        f"each pass over concurrency {', '.join(map(str, result['concurrency_levels']))}. "
        "Batches formed in the measured pass (items: batches): "
        + (", ".join(f"{size}: {n}" for size, n in result["batches_formed"].items()) or "-")
        + f"; answers: {_non_200(result['status_counts'])} non-200.",
        "",
        "| When | GPU memory (MiB) | Read from | Server RSS (MiB) |",
        "| --- | ---: | --- | ---: |",
    ]
    points = (("ready", "ready"), ("after warm-up (before)", "before"), ("after", "after"))
    for label, key in points:
        point = result[key]
        lines.append(
            f"| {label} | {fixed(point['gpu_mib'], 0)} | {point['source']} | "
            f"{fixed(point['rss_mib'], 1)} |"
        )
    before, after = result["before"]["gpu_mib"], result["after"]["gpu_mib"]
    lines += [
        "",
        f"Target: GPU memory growth <= {_percent(result['target_growth'], 0)} over the "
        f"{result['requests']:,} requests: {verdict(result['target_met'])} "
        f"(growth {_percent(result['growth'], 2)}: {fixed(after, 0)} MiB after, "
        f"{fixed(before, 0)} MiB before; server RSS growth {_percent(result['rss_growth'], 2)}).",
    ]
    return lines


def batch_sweep_lines(result: dict[str, Any]) -> list[str]:
    best = result["best_items_per_s"]
    lines = [
        f"`Pipeline.run` of the {result['bundle']} default bundle on {result['device']} "
        f"({', '.join(sorted({p[0] for p in result['providers'].values()}))}, IO binding "
        f"{'on' if result['io_binding'] else 'off'}), text cache off, "
        f"{result['seconds_per_size']:g} s per batch size.",
        "",
        "| Batch size | items/s | ms per batch | Share of the best |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['batch_size']} | {fixed(row['items_per_s'])} | "
            f"{fixed(row['ms_per_batch'], 2)} | {_percent(row['items_per_s'] / best, 0)} |"
        )
    chosen = next(r for r in result["rows"] if r["batch_size"] == result["recommended_batch_size"])
    lines += [
        "",
        f"Recommended GPU batch size: **{result['recommended_batch_size']}**, the smallest "
        f"within {result['fraction']:.0%} of the best items/s ({fixed(chosen['items_per_s'])} = "
        f"{_percent(chosen['items_per_s'] / best, 0)} of {fixed(best)} at batch "
        f"{result['best_batch_size']}). The GPU overlay sets "
        f"`FUSIONSERVE_MAX_BATCH_SIZE={result['deployed_batch_size']}` today; this page "
        "changes nothing there.",
    ]
    return lines
