"""(b) Default-bundle saturation: the fp32 and fp16 bundles, each with the CPU and the GPU
image decoder (FUSIONSERVE_IMAGE_DECODER), on the real-photo request set
(bench.harness.payloads.build_requests: 0.3-2 Mpx JPEG and PNG photos): req/s and p50/p99 of
the mix, of its JPEGs alone and of its PNGs alone (PNGs always decode on the CPU).

Each configuration is one server with the GPU overlay's settings (plan.GPU_OVERLAY_ENV,
workers auto), ``saturation_concurrency`` clients and as many admission slots, and the text
cache off (FUSIONSERVE_TEXT_CACHE_SIZE=0) so that every request runs the text encoder however
often the texts come round. A configuration that fails to start is recorded and the others
still run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.gpu.plan import GPU_OVERLAY_ENV, JPEG_TARGET_RPS, Plan
from bench.gpu.serving import info, measure, serving
from bench.harness.payloads import RequestSet, build_requests, describe_requests
from bench.harness.servers import Server, ServerError
from bench.harness.statistics import ratio_or_none

FORMATS = ("mixed", "JPEG", "PNG")
BUNDLES = ("fp32", "fp16")
DECODERS = ("cpu", "gpu")


def server_env(bundle: Path, plan: Plan, decoder: str) -> dict[str, str]:
    return {
        **GPU_OVERLAY_ENV,
        "FUSIONSERVE_BUNDLE_PATH": str(bundle),
        "FUSIONSERVE_DEVICE": plan.device,
        "FUSIONSERVE_IMAGE_DECODER": decoder,
        "FUSIONSERVE_MAX_BATCH_SIZE": str(plan.max_batch_size),
        "FUSIONSERVE_MAX_IN_FLIGHT": str(plan.saturation_concurrency),
        "FUSIONSERVE_TEXT_CACHE_SIZE": "0",
    }


def _format_runs(server: Server, requests: RequestSet, plan: Plan) -> dict[str, dict[str, Any]]:
    durations = {"mixed": plan.mixed_s, "JPEG": plan.jpeg_s, "PNG": plan.png_s}
    runs = {}
    for name in FORMATS:
        subset = requests if name == "mixed" else requests.of_format(name)
        runs[name] = measure(
            server, subset, plan.saturation_concurrency, durations[name], plan.loadgen_processes
        )
    return runs


def measure_config(
    bundle_name: str, bundle: Path, decoder: str, plan: Plan, port: int, logs: Path
) -> dict[str, Any]:
    """One bundle with one decoder: a server, a warm-up, the three request mixes."""
    record: dict[str, Any] = {"bundle": bundle_name, "decoder": decoder, "path": str(bundle)}
    if not (bundle / "manifest.json").exists():
        record["skipped"] = f"{bundle} has no bundle"
        return record
    requests = build_requests()
    env = server_env(bundle, plan, decoder)
    log = logs / f"saturation-{bundle_name}-{decoder}.log"
    try:
        with serving(f"{bundle_name}-{decoder}", port, env, requests, log) as server:
            record["info"] = info(server)
            conc, processes = plan.saturation_concurrency, plan.loadgen_processes
            measure(server, requests, conc, plan.saturation_warmup_s, processes)
            record["runs"] = _format_runs(server, requests, plan)
    except ServerError as error:
        record["error"] = str(error)[-1500:]
    return record


def comparisons(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios between configurations measured in the same run: GPU over CPU decoding per
    bundle, fp16 over fp32 per decoder (req/s of each request mix), and the JPEG target."""

    def rps(bundle: str, decoder: str, fmt: str) -> float | None:
        for config in configs:
            if config["bundle"] == bundle and config["decoder"] == decoder and "runs" in config:
                value: float = config["runs"][fmt]["throughput_rps"]
                return value
        return None

    def ratios(a: tuple[str, str], b: tuple[str, str]) -> dict[str, float | None]:
        return {fmt: ratio_or_none(rps(*a, fmt), rps(*b, fmt)) for fmt in FORMATS}

    gpu_over_cpu = {bundle: ratios((bundle, "gpu"), (bundle, "cpu")) for bundle in BUNDLES}
    fp16_over_fp32 = {decoder: ratios(("fp16", decoder), ("fp32", decoder)) for decoder in DECODERS}
    measured = [rps(bundle, "gpu", "JPEG") for bundle in BUNDLES]
    jpeg_gpu = [value for value in measured if value is not None]
    best = max(jpeg_gpu) if jpeg_gpu else None
    return {
        "gpu_over_cpu_decoding": gpu_over_cpu,
        "fp16_over_fp32": fp16_over_fp32,
        "best_jpeg_gpu_rps": best,
        "jpeg_target_rps": JPEG_TARGET_RPS,
        "jpeg_target_met": None if best is None else best >= JPEG_TARGET_RPS,
    }


def measure_saturation(plan: Plan, logs: Path) -> dict[str, Any]:
    configs = []
    bundles = (("fp32", plan.fp32_bundle), ("fp16", plan.fp16_bundle))
    port = plan.base_port + 10  # scaling's are below
    for bundle_name, bundle in bundles:
        for decoder in plan.decoders:
            configs.append(measure_config(bundle_name, bundle, decoder, plan, port, logs))
            port += 1
    return {
        "requests": describe_requests(build_requests()),
        "settings": {
            **GPU_OVERLAY_ENV,
            "FUSIONSERVE_DEVICE": plan.device,
            "FUSIONSERVE_MAX_BATCH_SIZE": str(plan.max_batch_size),
            "FUSIONSERVE_MAX_IN_FLIGHT": str(plan.saturation_concurrency),
            "FUSIONSERVE_TEXT_CACHE_SIZE": "0",
            "FUSIONSERVE_WORKERS": "auto",
        },
        "concurrency": plan.saturation_concurrency,
        "durations_s": {"mixed": plan.mixed_s, "JPEG": plan.jpeg_s, "PNG": plan.png_s},
        "configs": configs,
        "comparisons": comparisons(configs),
    }
