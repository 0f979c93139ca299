"""(c) The in-process limit: FusionServe's decode + pipeline with no HTTP, on all cores.

Throughput: decoding (``Pipeline.prepare``) runs in a thread pool of ``--decode-threads``
workers, kept ahead of the model by a bounded window of futures, while the main thread runs
``Pipeline.run`` on consecutive batches of a fixed size. That is the server's structure
(decode overlapping inference on the same cores) minus HTTP, parsing and the batcher, so
it is the ceiling a server built on this pipeline can approach.

Latency: one item at a time, decode then run, nothing else running: the floor for a
single client's latency.

Runs in its own process (``python -m bench.harness.inprocess``) so that its sessions and
threads never share a process with the load generator. The peer benchmark runs it as system
(c) and for the agreement reference; the variants suite calls ``throughput`` directly.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine, warm_up
from bench.harness.payloads import RequestSet, build_requests
from bench.harness.statistics import mean, median

BATCH_SIZES = (1, 4, 8, 16, 32)


def throughput(
    engine: Engine,
    requests: RequestSet,
    batch_size: int,
    duration_s: float,
    decode_threads: int,
) -> dict[str, float]:
    """Items/s through decode + ``Pipeline.run`` at a fixed batch size for ``duration_s``."""
    pipeline = engine.pipeline
    window = 2 * batch_size + decode_threads  # enough decoded items queued to never starve
    pending: deque[Future[PreparedItem]] = deque()
    items = 0
    with ThreadPoolExecutor(decode_threads, thread_name_prefix="decode") as pool:

        def top_up() -> None:
            while len(pending) < window:
                image, text = requests.inputs(requests.next_index())  # fresh text each time
                pending.append(pool.submit(engine.prepare, image, text))

        top_up()
        started, cpu_started = time.perf_counter(), time.process_time()
        while time.perf_counter() - started < duration_s:
            batch = [pending.popleft().result() for _ in range(batch_size)]
            top_up()
            pipeline.run(batch)
            items += batch_size
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        for future in pending:  # not-yet-started decodes would only delay the pool's shutdown
            future.cancel()
    return {
        "batch_size": batch_size,
        "items": items,
        "seconds": round(elapsed, 3),
        "items_per_s": round(items / elapsed, 3),
        # CPU per item, all threads: compare with a server's CPU per request.
        "cpu_ms_per_item": round(cpu * 1000 / items, 3),
    }


def single_item_latency(engine: Engine, requests: RequestSet, count: int) -> dict[str, float]:
    """Decode + run of one item, sequentially, over ``count`` consecutive requests."""
    pipeline = engine.pipeline
    latencies = []
    for _ in range(count):
        image, text = requests.inputs(requests.next_index())  # a fresh text, as over HTTP
        started = time.perf_counter()
        pipeline.run([engine.prepare(image, text)])
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "count": count,
        "median_ms": median(latencies),
        "mean_ms": mean(latencies),
    }


def reference(engine: Engine, requests: RequestSet, indices: Sequence[int]) -> list[list[float]]:
    """Probabilities of requests ``indices``, one item at a time: the agreement reference."""
    pipeline = engine.pipeline
    rows = []
    for index in indices:
        image, text = requests.inputs(index)
        rows.append([float(p) for p in pipeline.run([engine.prepare(image, text)])[0]])
    return rows


def measure(
    duration_s: float = 8.0,
    latency_count: int = 192,
    decode_threads: int = 2,
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> dict[str, Any]:
    settings = Settings()  # FUSIONSERVE_* from the environment, exactly like the server
    engine = build_engine(settings)
    warm_up(engine)
    requests = build_requests()
    # One untimed pass so every image's decode path and a full batch shape are warm.
    throughput(engine, requests, max(batch_sizes), 1.0, decode_threads)
    runs = [throughput(engine, requests, b, duration_s, decode_threads) for b in batch_sizes]
    best = max(runs, key=lambda r: r["items_per_s"])
    return {
        "settings": {
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
            "allow_spinning": settings.allow_spinning,
            "decode_threads": decode_threads,
            "duration_s": duration_s,
        },
        "throughput": runs,
        "best_items_per_s": best["items_per_s"],
        "best_batch_size": best["batch_size"],
        "single_item": single_item_latency(engine, requests, latency_count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness.inprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per batch size")
    parser.add_argument("--latency-count", type=int, default=192)
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--json", help="write the result here as well as to stdout")
    parser.add_argument(
        "--reference",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        help="instead of measuring, print the probabilities of requests START..STOP-1",
    )
    args = parser.parse_args()
    if args.reference:
        engine = build_engine(Settings())
        rows = reference(engine, build_requests(), range(*args.reference))
        print(json.dumps({"indices": list(range(*args.reference)), "probabilities": rows}))
        return
    result = measure(
        args.duration,
        args.latency_count,
        decode_threads=args.decode_threads,
        batch_sizes=args.batch_sizes,
    )
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text)
    print(text)


if __name__ == "__main__":
    main()
