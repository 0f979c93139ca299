"""fp32 against int8, and explain off against on: in-process and over HTTP, side by side.

``python -m bench.variants.variant_benchmark [--quick] [--repeats 3] [--rounds 5]`` (about 7
minutes on 2 cores; ``--quick``: about 2). Needs ``models/default`` and ``models/default-int8``
(``python -m models.recipes.fashion_mnist.build_int8_bundle``).

(a) In-process, no HTTP (one process, both bundles loaded): decode pool + ``Pipeline.run`` at
    batch sizes 1 and 8 (``bench.harness.inprocess.throughput``: fresh texts, so the text
    cache never hits), the two bundles alternated within each round and their order flipped
    every round, so that load from other processes hits both alike; medians over the rounds
    and the ratio int8/fp32. Then each encoder alone on a fixed batch (decoded request
    images, request texts), alternated the same way.
(b) HTTP through ``fusionserve serve``: three servers, one at a time, in an order rotated by
    the repeat: fp32, int8, and fp32 with ``explain=true`` on every request. Each is started,
    checked (bundle name; an explanation exactly when asked), warmed up, driven at saturation
    by the closed-loop load generator (same concurrency for all), then by a single client,
    and stopped. Medians over repeats, and the ratios int8/fp32 and explain/plain of
    throughput and p50/p99 latency, also per repeat (where the three ran a minute apart).

Every measurement records the CPU that other processes used meanwhile: on a shared machine
that is the noise to read the ratios against. Writes ``bench/results/variants.json``
(``--quick``: ``bench/results/quick/variants.json``; summarised by
bench.variants.variant_summary) and, unless ``--quick`` or ``--no-docs``, the benchmark
section of ``docs/int8.md`` (bench.variants.int8_doc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config.settings import Settings
from app.core.engine import Engine, build_engine, warm_up
from bench.harness.inprocess import throughput
from bench.harness.loadgen import classify_each, run, saturation_run, single_run, warmup_run
from bench.harness.paths import REPO_ROOT, output_dir
from bench.harness.payloads import RequestSet, build_requests
from bench.harness.procs import OtherCpu
from bench.harness.servers import COMMON_ENV, Server, SystemSpec
from bench.harness.session import bench_lock, logger, machine_info, rotated
from bench.variants.int8_doc import write_doc
from bench.variants.variant_summary import BUNDLES, CONFIGS, summarize_http, summarize_inprocess

FP32_BUNDLE = REPO_ROOT / "models" / "default"
INT8_BUNDLE = REPO_ROOT / "models" / "default-int8"
PORTS = {"fp32": 8121, "int8": 8122, "fp32_explain": 8123}


@dataclass(frozen=True)
class Plan:
    rounds: int = 5
    duration_s: float = 4.0  # per in-process pipeline run
    encoder_s: float = 1.5  # per encoder-only run
    batch_sizes: tuple[int, ...] = (1, 8)
    decode_threads: int = 2
    repeats: int = 3
    concurrency: int = 32
    warmup_s: float = 3.0
    saturation_s: float = 15.0
    single_s: float = 4.0

    @classmethod
    def quick(cls, repeats: int, rounds: int) -> Plan:
        return cls(
            rounds=rounds,
            duration_s=2.0,
            encoder_s=0.75,
            repeats=repeats,
            warmup_s=2.0,
            saturation_s=6.0,
            single_s=2.0,
        )


log = logger("variants")


def _settings(bundle: Path) -> Settings:
    # The ONNX Runtime settings every benchmarked server gets (bench/harness/servers.py COMMON_ENV).
    return Settings(
        bundle_path=bundle,
        device="cpu",
        intra_op_threads=int(COMMON_ENV["FUSIONSERVE_INTRA_OP_THREADS"]),
        inter_op_threads=int(COMMON_ENV["FUSIONSERVE_INTER_OP_THREADS"]),
        allow_spinning=False,
    )


def pipeline_runs(
    plan: Plan, engines: dict[str, Engine], requests: RequestSet
) -> list[dict[str, Any]]:
    """Decode pool + ``Pipeline.run``, each bundle at each batch size, alternated per round."""
    runs = []
    for round_ in range(plan.rounds):
        for batch in plan.batch_sizes:
            for name in rotated(BUNDLES, round_):
                other = OtherCpu()
                result = throughput(
                    engines[name], requests, batch, plan.duration_s, plan.decode_threads
                )
                runs.append(
                    {"round": round_, "bundle": name, **result, "other_cpu_s": other.seconds()}
                )
        log(f"pipeline round {round_ + 1}/{plan.rounds}: {_last(runs, 2 * len(plan.batch_sizes))}")
    return runs


def _last(runs: list[dict[str, Any]], count: int) -> str:
    return ", ".join(
        f"{r['bundle']} b{r['batch_size']} {r['items_per_s']:.1f}/s" for r in runs[-count:]
    )


def _encoder_inputs(
    engine: Engine, requests: RequestSet, size: int
) -> dict[str, Callable[[], object]]:
    """One call of each encoder on ``size`` request images / texts, prepared once; and one
    ``Pipeline.run`` (both encoders and the head) on the same items, decoded and tokenised
    once. ``engine`` has no text cache, so every call runs the text encoder."""
    pipeline = engine.pipeline
    assert pipeline.text_cache.capacity == 0
    pixels = np.stack([pipeline.decoder(requests.inputs(i)[0]) for i in range(size)])
    tokens = [pipeline.tokenizer.encode(requests.inputs(i)[1]) for i in range(size)]
    items = [engine.prepare(*requests.inputs(i)) for i in range(size)]
    return {
        "image_encoder": lambda: pipeline.encode_images(pixels),
        "text_encoder": lambda: pipeline.encode_texts(tokens),
        "model_pipeline": lambda: pipeline.run(items),
    }


def _items_per_s(call: Callable[[], object], size: int, seconds: float) -> float:
    call()  # this shape warm
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        calls += 1
    return round(calls * size / (time.perf_counter() - started), 3)


def encoder_runs(
    plan: Plan, engines: dict[str, Engine], requests: RequestSet
) -> list[dict[str, Any]]:
    """Each encoder alone, and the models together (``Pipeline.run`` on decoded items), at
    each batch size, bundles alternated per round."""
    calls = {
        (name, size): _encoder_inputs(engines[name], requests, size)
        for name in BUNDLES
        for size in plan.batch_sizes
    }
    runs = []
    for round_ in range(plan.rounds):
        for size in plan.batch_sizes:
            for encoder in ("image_encoder", "text_encoder", "model_pipeline"):
                for name in rotated(BUNDLES, round_):
                    other = OtherCpu()
                    rate = _items_per_s(calls[(name, size)][encoder], size, plan.encoder_s)
                    runs.append(
                        {
                            "round": round_,
                            "bundle": name,
                            "encoder": encoder,
                            "batch_size": size,
                            "items_per_s": rate,
                            "other_cpu_s": other.seconds(),
                        }
                    )
    return runs


def inprocess(plan: Plan, requests: RequestSet) -> dict[str, Any]:
    engines = {"fp32": build_engine(_settings(FP32_BUNDLE))}
    engines["int8"] = build_engine(_settings(INT8_BUNDLE))
    for engine in engines.values():
        warm_up(engine, max(plan.batch_sizes))
        throughput(engine, requests, max(plan.batch_sizes), 1.0, plan.decode_threads)  # untimed
    names = {name: engine.bundle.manifest.name for name, engine in engines.items()}
    pipeline = pipeline_runs(plan, engines, requests)
    log("encoders alone, and the models on decoded items")
    uncached = {
        name: build_engine(_settings(path).model_copy(update={"text_cache_size": 0}))
        for name, path in (("fp32", FP32_BUNDLE), ("int8", INT8_BUNDLE))
    }
    for engine in uncached.values():
        warm_up(engine, max(plan.batch_sizes))
    encoders = encoder_runs(plan, uncached, requests)
    del uncached
    del engines
    gc.collect()  # free the sessions (and their thread pools) before the servers start
    return {"bundles": names, "pipeline": pipeline, "encoders": encoders}


def explain_requests(requests: RequestSet) -> RequestSet:
    """The same requests with ``explain=true`` as a third form field."""
    return requests.with_fields({"explain": "true"})


def _spec(config: str) -> SystemSpec:
    bundle = INT8_BUNDLE if config == "int8" else FP32_BUNDLE
    return SystemSpec(
        config,
        f"fusionserve-{config}",
        f"FusionServe {config}",
        PORTS[config],
        env={"FUSIONSERVE_BUNDLE_PATH": str(bundle)},
    )


def _check_answer(config: str, answer: dict[str, Any], names: dict[str, str]) -> None:
    """The server answers from the intended bundle, with an explanation exactly when asked."""
    expected = names["int8" if config == "int8" else "fp32"]
    if answer["bundle"]["name"] != expected:
        raise RuntimeError(f"{config}: answered by {answer['bundle']['name']}, not {expected}")
    if (answer.get("explanation") is not None) != (config == "fp32_explain"):
        raise RuntimeError(f"{config}: explanation {answer.get('explanation')!r}")


def measure_server(
    plan: Plan, config: str, requests: RequestSet, names: dict[str, str], log_dir: Path
) -> dict[str, Any]:
    spec = _spec(config)
    server = Server(spec, log_dir / f"variants-{config}.log")
    record: dict[str, Any] = {"config": config}
    probe = len(requests) - 1  # never sent by the load runs of one server
    server.start()
    try:
        record["startup_s"] = round(server.wait_ready(requests, probe), 2)
        _check_answer(config, run(classify_each(spec.base_url, requests, [probe]))[0], names)
        warmup_run(spec.base_url, requests, plan)
        other = OtherCpu(server.track())
        record["saturation"] = saturation_run(spec.base_url, requests, plan).summary()
        record["saturation"]["other_cpu_s"] = other.seconds()
        record["single"] = single_run(spec.base_url, requests, plan).summary()
        record["rss_kib"] = server.rss_kib()
    finally:
        record["stop"] = server.stop()
    return record


def http_runs(
    plan: Plan, requests: RequestSet, names: dict[str, str], out: Path
) -> list[dict[str, Any]]:
    explained = explain_requests(requests)
    runs = []
    for repeat in range(plan.repeats):
        for position, config in enumerate(rotated(CONFIGS, repeat)):
            chosen = explained if config == "fp32_explain" else requests
            record = measure_server(plan, config, chosen, names, out / "logs")
            record |= {"repeat": repeat, "position": position}
            runs.append(record)
            sat = record["saturation"]
            log(
                f"http r{repeat} {config}: {sat['throughput_rps']} rps, p50/p99 "
                f"{sat['latency_ms']['p50']}/{sat['latency_ms']['p99']} ms, other CPU "
                f"{sat['other_cpu_s']} s"
            )
    return runs


def execute(plan: Plan, out: Path, skip_http: bool) -> dict[str, Any]:
    started, wall = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.monotonic()
    load_before, other = os.getloadavg(), OtherCpu()
    requests = build_requests()
    log("in-process: fp32 and int8 pipelines, alternated")
    data = inprocess(plan, requests)
    results: dict[str, Any] = {"started": started, "plan": asdict(plan), "inprocess": data}
    results["summary"] = {"inprocess": summarize_inprocess(data)}
    if not skip_http:
        http = http_runs(plan, requests, data["bundles"], out)
        results["http"] = http
        results["summary"]["http"] = summarize_http(http)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_s = time.monotonic() - wall
    others = other.seconds() - (children.ru_utime + children.ru_stime)
    results["wall_s"] = round(wall_s, 1)
    results["machine"] = machine_info([]) | {
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        # Cores' worth of CPU that other processes used over the whole session.
        "other_cores_busy": round(others / wall_s, 2),
    }
    return results


def summary_lines(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    inproc = s["inprocess"]
    lines = [
        f"pipeline items/s: {inproc['pipeline_items_per_s']} -> int8/fp32 "
        f"{inproc['pipeline_ratio_int8_fp32']}",
        f"encoders items/s: {inproc['encoder_items_per_s']} -> int8/fp32 "
        f"{inproc['encoder_ratio_int8_fp32']}",
    ]
    if "http" in s:
        http = s["http"]
        lines += [
            f"http medians: {http['medians']}",
            f"http int8/fp32: {http['int8_vs_fp32']}",
            f"http explain/plain: {http['explain_vs_plain']}",
        ]
    lines.append(
        f"other processes used {results['machine']['other_cores_busy']} cores on average "
        f"(load average before {results['machine']['loadavg_before']})"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.variants.variant_benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat")
    parser.add_argument("--repeats", type=int, help="HTTP repeats (default 3; quick 1)")
    parser.add_argument("--rounds", type=int, help="in-process rounds (default 5; quick 2)")
    parser.add_argument("--inprocess-only", action="store_true", help="skip the HTTP part")
    parser.add_argument("--out", type=Path, help="results folder")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/int8.md")
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan.quick(args.repeats or 1, args.rounds or 2)
    else:
        plan = Plan(repeats=args.repeats or 3, rounds=args.rounds or 5)
    if not (INT8_BUNDLE / "manifest.json").is_file():
        print(
            f"{INT8_BUNDLE} is missing: python -m models.recipes.fashion_mnist.build_int8_bundle",
            file=sys.stderr,
        )
        return 2
    out = output_dir(args.out, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    with bench_lock(" ".join(sys.argv)):
        results = execute(plan, out, args.inprocess_only)
    results["command"] = " ".join(
        ["python -m bench.variants.variant_benchmark", *(argv or sys.argv[1:])]
    )
    path = out / "variants.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(summary_lines(results)))
    log(f"wrote {path} in {results['wall_s'] / 60:.1f} min")
    if not (args.quick or args.no_docs or args.inprocess_only):
        write_doc(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
