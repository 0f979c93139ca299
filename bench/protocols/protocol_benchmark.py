"""gRPC against HTTP on the tiny bundle, side by side in one run: throughput and server CPU per
request of the same classification (a 64x64 JPEG and a short text) over ``POST /classify``
(multipart), and over the Open Inference Protocol's gRPC ``ModelInfer`` (raw contents), plus
HTTP with the gRPC port off, to show what an idle gRPC server costs HTTP traffic, and HTTP
with OpenTelemetry tracing on (every request sampled, spans exported over OTLP/HTTP to a sink
in this process that answers 200), to show what tracing costs.

The tiny bundle's models cost nothing, so what is measured is each protocol's serving path.
One server per system (one worker process), started fresh; the systems are measured in
turn, repeat after repeat, in a rotated order; each window is a closed loop of ``clients``
concurrent clients in this process (aiohttp for HTTP, one grpc.aio channel for gRPC), and the
server's whole process tree's CPU is read before and after it.

``python -m bench.protocols.protocol_benchmark [--repeats 3] [--seconds 10] [--clients 32]
[--out bench/results/protocols.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.oip.tensors import serialize_bytes
from bench.harness import procs
from bench.harness.loadgen import closed_loop, run
from bench.harness.paths import RESULTS_DIR
from bench.harness.payloads import RequestSet, tiny_requests
from bench.harness.servers import Server, SystemSpec
from bench.harness.statistics import median, ratio
from tests.support.tiny_bundle import make_tiny_bundle

HTTP_PORT, GRPC_PORT, OTLP_PORT = 8730, 8731, 8732
SYSTEMS = ("http", "http-grpc-off", "grpc", "http-tracing")


def server_env(bundle: Path, grpc_port: int, tracing: bool = False) -> dict[str, str]:
    env = {
        "FUSIONSERVE_BUNDLE_PATH": str(bundle),
        "FUSIONSERVE_WORKERS": "1",
        "FUSIONSERVE_INTRA_OP_THREADS": "1",
        "FUSIONSERVE_GRPC_PORT": str(grpc_port),
        "FUSIONSERVE_MAX_IN_FLIGHT": "1024",
    }
    if tracing:
        env |= {
            "FUSIONSERVE_TRACING": "true",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_PORT}",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
    return env


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and counts their bytes."""

    received = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length", "0"))
        _Sink.received += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[type[_Sink]]:
    """An OTLP/HTTP receiver on ``OTLP_PORT`` for the tracing system's spans."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", OTLP_PORT), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield _Sink
    finally:
        server.shutdown()
        server.server_close()


def infer_request(requests: RequestSet) -> Any:
    """One ModelInferRequest of the tiny request (its first image and text), raw contents."""
    request = service_pb2.ModelInferRequest(model_name="tiny-test-bundle")
    for name, value in (("image", requests.images[0].data), ("text", requests.texts[0].encode())):
        request.inputs.add(name=name, datatype="BYTES", shape=[1])
        request.raw_input_contents.append(serialize_bytes([value]))
    return request


async def grpc_closed_loop(address: str, request: Any, clients: int, seconds: float) -> int:
    """``clients`` concurrent ModelInfer calls back to back for ``seconds``; the OK answers."""
    answered = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal answered
            while time.perf_counter() < end:
                try:
                    await stub.ModelInfer(request, timeout=30)
                except grpc.aio.AioRpcError:
                    continue
                if time.perf_counter() <= end:
                    answered += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return answered


def window(server: Server, load: Callable[[], int], seconds: float) -> dict[str, float]:
    """One measured window: answers per second and server CPU milliseconds per answer."""
    members = server.track()
    cpu_before, client_before = procs.cpu_seconds(members), procs.own_cpu_seconds()
    answered = load()
    cpu = procs.cpu_seconds(server.track()) - cpu_before
    client = procs.own_cpu_seconds() - client_before
    return {
        "rps": round(answered / seconds, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / max(answered, 1), 3),
        "client_cpu_ms_per_request": round(1000 * client / max(answered, 1), 3),
    }


def measure(
    system: str, bundle: Path, requests: RequestSet, clients: int, seconds: float, logs: Path
) -> dict[str, float]:
    grpc_port = 0 if system == "http-grpc-off" else GRPC_PORT
    env = server_env(bundle, grpc_port, tracing=system == "http-tracing")
    spec = SystemSpec(system, "fusionserve", system, HTTP_PORT, env=env)
    server = Server(spec, logs / f"{system}.log")
    server.start()
    try:
        server.wait_ready(requests, 0)
        if system == "grpc":
            request = infer_request(requests)
            address = f"127.0.0.1:{GRPC_PORT}"

            def load(duration: float) -> int:
                return asyncio.run(grpc_closed_loop(address, request, clients, duration))
        else:

            def load(duration: float) -> int:
                result = run(closed_loop(spec.base_url, requests, clients, duration))
                return sum(1 for s in result.samples if s.status == "200")

        load(2.0)  # warm-up: connections, arenas, caches
        return window(server, lambda: load(seconds), seconds)
    finally:
        server.stop(grace_s=10.0)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    medians = {
        system: {
            key: median(r[key] for r in runs if r["system"] == system)
            for key in ("rps", "server_cpu_ms_per_request", "client_cpu_ms_per_request")
        }
        for system in SYSTEMS
    }
    http, grpc_, off = medians["http"], medians["grpc"], medians["http-grpc-off"]
    traced = medians["http-tracing"]
    return {
        "medians": medians,
        "tracing_on_over_off_rps": ratio(traced["rps"], http["rps"]),
        "tracing_on_over_off_server_cpu": ratio(
            traced["server_cpu_ms_per_request"], http["server_cpu_ms_per_request"]
        ),
        "grpc_over_http_rps": ratio(grpc_["rps"], http["rps"]),
        "grpc_over_http_server_cpu": ratio(
            grpc_["server_cpu_ms_per_request"], http["server_cpu_ms_per_request"]
        ),
        "http_grpc_on_over_off_rps": ratio(http["rps"], off["rps"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "protocols.json")
    args = parser.parse_args()
    requests = tiny_requests()
    runs = []
    started = time.time()
    with tempfile.TemporaryDirectory() as folder, otlp_sink() as sink:
        bundle = make_tiny_bundle(Path(folder) / "tiny")
        logs = Path(folder) / "logs"
        for repeat in range(args.repeats):
            shift = repeat % len(SYSTEMS)
            order = SYSTEMS[shift:] + SYSTEMS[:shift]
            for system in order:
                result = measure(system, bundle, requests, args.clients, args.seconds, logs)
                runs.append({"repeat": repeat, "system": system, **result})
                print(json.dumps(runs[-1]), flush=True)
    results = {
        "command": "python -m bench.protocols.protocol_benchmark "
        f"--repeats {args.repeats} --seconds {args.seconds} --clients {args.clients}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "machine": {"cpus": len(os.sched_getaffinity(0))},
        "request": "tiny bundle: one 64x64 JPEG and a short text (bench.harness.payloads)",
        "runs": runs,
        "otlp_bytes_received": sink.received,
        "summary": summarize(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
