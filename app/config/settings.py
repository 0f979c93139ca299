"""The one settings class. Every value comes from ``FUSIONSERVE_*`` environment variables."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The default bundle of a source checkout (``fusionserve build-default-bundle`` writes it).
# Installed elsewhere (a container), set FUSIONSERVE_BUNDLE_PATH.
DEFAULT_BUNDLE_PATH = Path(__file__).resolve().parents[2] / "models" / "default"


class Settings(BaseSettings):
    """Service configuration. Limits are named settings with conservative defaults."""

    model_config = SettingsConfigDict(env_prefix="FUSIONSERVE_", env_file=None, extra="ignore")

    bundle_path: Path = Field(
        default=DEFAULT_BUNDLE_PATH,
        description="Bundle directory; relative paths resolve from the working directory.",
    )
    bundles: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Serve several bundles: a JSON list or comma-separated directories. Each is "
            "served under its manifest name (names must differ), with its own batcher; the "
            "first is the default for requests without `model`. Overrides bundle_path; empty: "
            "bundle_path alone."
        ),
    )
    verify_bundle_hashes: bool = Field(
        default=True,
        description=(
            "Check every bundle file against the sha256 in its manifest at start-up and on "
            "reload; a mismatch fails the load."
        ),
    )
    verify_golden_inputs: bool = Field(
        default=True,
        description=(
            "Embed a bundle's golden inputs (manifest `golden`, schema version 2) at start-up "
            "and on reload and fail the load if any embedding's cosine to the one stored with "
            "the bundle is under its `min_cosine`: the bundle would answer differently here "
            "than where it was exported. Turn off only to serve such a bundle knowingly."
        ),
    )
    model_repository: Path | None = Field(
        default=None,
        description=(
            "A directory whose subdirectories are bundles: POST /v2/repository/models/{name}/"
            "load and /unload (and their gRPC calls, Triton's model repository extension) "
            "load and unload them by manifest name, behind the API keys. Unset: the "
            "extension answers 403. One worker process only."
        ),
    )
    reload_enabled: bool = Field(
        default=True,
        description=(
            "Allow POST /v1/models/{name}/reload (behind the API keys when they are set)."
        ),
    )

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    forwarded_allow_ips: str | None = Field(
        default=None,
        description=(
            "Proxies trusted to set X-Forwarded-For and X-Forwarded-Proto (comma-separated "
            "addresses or networks, or *): the client address and scheme then come from those "
            "headers. Unset: proxy headers are not read (uvicorn's proxy middleware is off)."
        ),
    )
    port: int = Field(
        default=8000, ge=0, le=65535, description="Port to listen on; 0 picks a free port."
    )
    grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description=(
            "Port of the Open Inference Protocol over gRPC (inference.GRPCInferenceService, "
            "as Triton and KServe serve it), on host, in the same process and event loop as "
            "HTTP; 0 turns it off. Messages are limited to max_body_bytes."
        ),
    )
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        default="auto",
        description=(
            "Serving processes on the one port (`fusionserve serve`), each with its own "
            "sessions and batcher: 1 to 64, or auto (one per two of the cores the process may "
            "use, by its CPU affinity and its cgroup's CPU quota; at least 1: on the CPU a "
            "worker's event loop takes a core and its ONNX Runtime threads another, on a GPU "
            "its decoding, tokenising and kernel launches do; so 1 on 2 or 3 cores). With "
            "several, max_in_flight is the pod's and is divided between the workers, and so "
            "are the cores for ONNX Runtime's intra-op threads when that is 0; the memory "
            "budgets (decode_memory_mb, body_memory_mb) are each worker's, so a pod needs "
            "that much memory per worker. Readiness waits for every worker, /metrics gives the "
            "pod's totals and a reload reaches every worker."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info",
        description="Log level. At info nothing is logged per request unless access_log is on.",
    )
    access_log: bool = Field(
        default=False,
        description="One log line per HTTP request (uvicorn's access log); off by default.",
    )
    # Observability
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="One JSON object per log line (with request_id when known), or plain text.",
    )
    configure_logging: bool = Field(
        default=False,
        description=(
            "create_app() sets up logging itself (log_format, log_level, access_log); for "
            "`uvicorn --factory app.main:create_app`. `fusionserve serve` always does."
        ),
    )
    request_id_max_length: int = Field(
        default=128,
        ge=1,
        le=1024,
        description=(
            "Longest X-Request-ID accepted from a client (printable ASCII); a longer or "
            "invalid one is replaced by a generated id."
        ),
    )
    tracing: bool = Field(
        default=False,
        description=(
            "Export OpenTelemetry traces: a span per request (continuing an incoming W3C "
            "traceparent, over HTTP and gRPC), its admission, preprocessing and queue wait, "
            "and each batch with its model calls. The exporter is chosen and configured by the "
            "standard variables: OTEL_TRACES_EXPORTER (otlp, the default, or console), "
            "OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER..."
        ),
    )
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at /metrics.")
    demo_enabled: bool = Field(
        default=True,
        description=(
            "Serve the demo page at / (static HTML, CSS and JS that call /classify from the "
            "browser; open without an API key, it holds none). False: / is 404."
        ),
    )

    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto",
        description=(
            "auto: CUDA when ONNX Runtime has a working CUDA provider, else CPU (logged, and "
            "shown by /readyz); cuda: fail start-up without a working CUDA provider; cpu."
        ),
    )
    cuda_device_id: int = Field(default=0, ge=0, description="The GPU the CUDA provider uses.")
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = Field(
        default="kNextPowerOfTwo",
        description=(
            "How the CUDA provider's memory arena grows: kNextPowerOfTwo (ONNX Runtime's "
            "default, fewer allocations) or kSameAsRequested (no headroom: less GPU memory "
            "for varied batch sizes)."
        ),
    )
    cuda_mem_limit_mb: int = Field(
        default=0,
        ge=0,
        description=(
            "Most GPU memory (MiB) the CUDA provider's arena may take, per session; 0: no limit."
        ),
    )
    tensorrt: bool = Field(
        default=False,
        description=(
            "Ask for ONNX Runtime's TensorRT provider before CUDA (GPU only; skipped, with a "
            "warning, when this ONNX Runtime has none). Its engines are built on first use "
            "and cached in tensorrt_cache_dir."
        ),
    )
    tensorrt_cache_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "fusionserve-tensorrt",
        description=(
            "Where TensorRT engines (and timing data) are cached; keep it on a volume so that "
            "a restart does not build them again."
        ),
    )
    image_decoder: Literal["auto", "cpu", "gpu"] = Field(
        default="auto",
        description=(
            "Who decodes JPEG uploads. gpu: nvImageCodec (the gpu extra) decodes on the GPU "
            "and ONNX Runtime resizes there; fail start-up when that cannot work. auto: gpu "
            "when nvImageCodec is installed and the image encoder runs on CUDA, else cpu "
            "(Pillow). Other formats, and JPEGs the GPU cannot decode, always decode on the CPU."
        ),
    )
    io_binding: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "Run the models through ONNX Runtime IO binding: inputs copied to the device once, "
            "image features kept on the GPU between the image encoder and the fusion head. "
            "auto: on for sessions on CUDA, off on CPU (where it saves nothing); on; off."
        ),
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads within an operator; 0 lets it decide."
    )
    inter_op_threads: int = Field(
        default=1, ge=0, description="ONNX Runtime threads across independent operators."
    )
    allow_spinning: bool = Field(
        default=False,
        description="ORT worker spin-waiting; off leaves CPU to decoding and the event loop.",
    )

    preprocess_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Thread pool (per bundle) that decodes images and tokenises texts.",
    )
    inline_decode_max_pixels: int = Field(
        default=65_536,
        ge=0,
        le=1_048_576,
        description=(
            "Images of at most this many pixels (by their header) are decoded on the event "
            "loop, without the hand-offs to and from the preprocess pool, which cost more "
            "than decoding a thumbnail; larger ones in the pool. 0 decodes every image in "
            "the pool."
        ),
    )
    inference_threads: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Thread pool (per bundle) that runs the batches through the models.",
    )
    inline_batch_max_ms: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description=(
            "A bundle whose warm-up ran a full batch (the longest text) in at most this many "
            "milliseconds runs its batches on the event loop, not in the inference pool: for "
            "so fast a model the hand-off to the thread and back, and the GIL the two threads "
            "then fight over, cost more CPU than the batch. Batches run there are timed; "
            "should they take over twice this on average, the bundle goes back to its pool. "
            "0 runs every batch in the pool."
        ),
    )
    gc_young_threshold: int = Field(
        default=2000,
        ge=0,
        description=(
            "Objects the server process may allocate (net of those freed) before Python's "
            "cyclic garbage collector runs on its youngest generation (Python's default is "
            "700). Requests leave no reference cycles, so under load the collections find "
            "nothing: at 700, the objects of the requests in flight set one off every few "
            "requests, and each run's survivors bring on full collections of the whole heap. "
            "0 turns automatic collection off."
        ),
    )

    max_batch_size: int = Field(
        default=8,
        ge=1,
        le=1024,
        description=(
            "1 turns dynamic batching off. On CPU the default bundle gains nothing past 4-8 "
            "items (docs/benchmarks.md); on a GPU raise it (32-64)."
        ),
    )
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description=(
            "Extra wait to fill a batch. At 0 a request to an idle model runs at once, and "
            "batches form only while the model is busy."
        ),
    )
    max_in_flight: int = Field(
        default=128,
        ge=1,
        description=(
            "Hard ceiling on items accepted at once (decoding, queued or running), whatever "
            "the model's pace: it bounds the memory they hold. More get a fast 503 with "
            "Retry-After, answered before the body is parsed. Admission proper is by "
            "expected wait (max_queue_wait_s)."
        ),
    )
    max_queue_wait_s: float = Field(
        default=0.5,
        gt=0.0,
        le=60.0,
        description=(
            "Admission by expected wait: a request is admitted while the work already "
            "accepted, at the measured busy time per answered item, would be done within this "
            "many seconds (and within request_timeout_s); beyond it, a fast 503 whose "
            "Retry-After is the predicted time for that work to drain. Bounds the queueing "
            "delay for fast and slow models alike."
        ),
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description=(
            "Per-request deadline, decoding and queueing included: past it, 504, and a "
            "request that expires in the queue is never computed."
        ),
    )
    disconnect_watch_after_s: float = Field(
        default=0.1,
        ge=0.0,
        le=60.0,
        description=(
            "A request whose client leaves is noticed once it has waited this long, and its "
            "queued item is then skipped, not computed; one answered sooner is not watched "
            "(watching costs about as much CPU as the request's route). 0: every request is "
            "watched from the start."
        ),
    )
    retry_after_s: int = Field(
        default=1, ge=1, description="The least Retry-After on overload (503 or 429)."
    )
    priority_levels: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Request priorities, 1 (the most urgent) to this: the `priority` field of /classify "
            "and /classify/batch, the `priority` parameter of an Open Inference Protocol "
            "request (HTTP and gRPC). More urgent items are batched first (an item that has "
            "waited max_queue_wait_s counts as most urgent, so none starves), and priority p "
            "may fill only (levels - p + 1) / levels of max_in_flight and of max_queue_wait_s, "
            "so under overload the least urgent are refused first."
        ),
    )
    default_priority: int = Field(
        default=1,
        ge=1,
        le=10,
        description=(
            "The priority of a request that names none (or 0). 1, the most urgent, keeps the "
            "whole of the admission limits for such requests; callers mark background work "
            "with a higher number."
        ),
    )
    overload_status: int = Field(
        default=503,
        description=(
            "The HTTP status of an overload refusal (overloaded, memory busy): 503 or 429, "
            "with Retry-After either way; over gRPC, UNAVAILABLE or RESOURCE_EXHAUSTED. "
            "Not ready and stopping stay 503."
        ),
    )

    # Access control and shutdown
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "Keys accepted as `Authorization: Bearer <key>`: a JSON list or comma-separated. "
            "With none here and no api_keys_file, authentication is off."
        ),
    )
    api_keys_file: Path | None = Field(
        default=None,
        description=(
            "More keys, one per line (blank lines and # comments ignored), read once at "
            "start-up; start-up fails if it cannot be read or holds no key."
        ),
    )
    auth_protect_docs: bool = Field(
        default=True,
        description="With authentication on, /docs, /redoc and /openapi.json need a key too.",
    )
    auth_protect_metrics: bool = Field(
        default=True, description="With authentication on, /metrics needs a key too."
    )
    shutdown_delay_s: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "After SIGTERM, keep listening this long with /readyz at 503 and new requests "
            "refused (503 shutting_down), so that load balancers see the replica leave before "
            "its port closes; behind one, set it to about a readiness-probe period."
        ),
    )
    shutdown_grace_s: int = Field(
        default=25,
        ge=1,
        description=(
            "Then, with the port closed, how long accepted requests may take to be answered "
            "before they are cancelled (uvicorn's timeout_graceful_shutdown). Keep it above "
            "request_timeout_s, and shutdown_delay_s + shutdown_grace_s a few seconds under "
            "the orchestrator's kill deadline (Kubernetes terminationGracePeriodSeconds, "
            "30 s by default)."
        ),
    )

    def bundle_dirs(self) -> list[Path]:
        """The bundles to serve, the default first."""
        return list(self.bundles) or [self.bundle_path]

    @field_validator("overload_status")
    @classmethod
    def _overload_status(cls, value: int) -> int:
        if value not in (503, 429):
            raise ValueError("overload_status must be 503 or 429")
        return value

    @field_validator("api_keys", "bundles", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # The environment gives one string: a JSON list, or items separated by commas.
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list | tuple):
            # Blank entries ("a,,b", a trailing comma) are dropped: never an empty key or path.
            stripped = [k.strip() if isinstance(k, str) else k for k in value]
            return [k for k in stripped if k != ""]
        return value

    @model_validator(mode="after")
    def _default_priority_is_a_level(self) -> Settings:
        if self.default_priority > self.priority_levels:
            raise ValueError(
                f"default_priority ({self.default_priority}) must be one of the "
                f"{self.priority_levels} priority_levels"
            )
        return self

    @model_validator(mode="after")
    def _body_memory_holds_a_body(self) -> Settings:
        if self.body_memory_mb * 2**20 < self.max_body_bytes:
            raise ValueError(
                f"body_memory_mb ({self.body_memory_mb} MiB) must hold at least one body of "
                f"max_body_bytes ({self.max_body_bytes} bytes)"
            )
        return self

    warmup: bool = Field(
        default=True,
        description=(
            "Run a warm-up (one item, then a full batch) through every bundle before it "
            "serves; a bundle whose warm-up gives invalid probabilities fails to load."
        ),
    )
    exit_on_startup_failure: bool = Field(
        default=True,
        description="Stop the process when the bundle cannot be loaded, so it gets restarted.",
    )

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1,
        description=(
            "Whole request body: over it, 413 before the body is read when Content-Length "
            "says so, else as soon as the bytes received pass it."
        ),
    )
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="One image file; a larger one gets 413."
    )
    # Memory: deploy/ sizes the containers from these (tests/deploy/test_memory_limits.py).
    decode_memory_mb: int = Field(
        default=256,
        ge=1,
        description=(
            "MiB that image decodes may hold at once, over the whole process. Each decode's "
            "peak is estimated from the image's header and reserved before any pixel is "
            "decoded: an image estimated over the whole budget gets 413; otherwise it waits "
            "for room within its deadline, then gets 503 with Retry-After. 256 MiB decodes "
            "any PNG, TIFF, BMP, GIF or JPEG up to max_image_pixels (one at a time near the "
            "cap) and WebP up to about 15 megapixels."
        ),
    )
    body_memory_mb: int = Field(
        default=64,
        ge=1,
        description=(
            "MiB of request bodies the classification routes may hold at once, over the "
            "whole process, counted from Content-Length (max_body_bytes when it is missing "
            "or the body is compressed) before the body is read; beyond it a fast 503 with "
            "Retry-After. At least max_body_bytes."
        ),
    )
    max_image_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description=(
            "Pixels in one image (width x height), checked from the header before any pixel "
            "is decoded; more get 413."
        ),
    )
    min_image_side: int = Field(
        default=8,
        ge=1,
        description="Shortest image side in pixels, checked from the header; shorter gets 422.",
    )
    jpeg_draft: bool = Field(
        default=True,
        description="Decode large JPEGs at reduced scale (libjpeg DCT scaling).",
    )
    max_text_chars: int = Field(
        default=4096,
        ge=1,
        description="Characters in one text after NFC normalisation; a longer text gets 422.",
    )
    # Input limits
    max_text_field_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description=(
            "One text field of a form, or one text element of an Open Inference Protocol "
            "request, in bytes as sent; a larger one gets 413 while the request is parsed. "
            "The number of files and fields is bounded by max_items_per_request."
        ),
    )
    max_image_aspect_ratio: float = Field(
        default=20.0,
        ge=1.0,
        description=(
            "Longer side over shorter side; more elongated images get 422 (resizing one "
            "to the model's short side would allocate in proportion to this ratio)."
        ),
    )
    max_items_per_request: int = Field(
        default=32,
        ge=1,
        description=(
            "Items in one POST /classify/batch or Open Inference Protocol request; also "
            "bounds the files and fields of any form while it is parsed."
        ),
    )
    text_cache_size: int = Field(
        default=10_000,
        ge=0,
        description=(
            "Text embeddings kept in the LRU cache (per bundle), and as many texts' token "
            "ids; 0 disables both."
        ),
    )
    text_length_buckets: tuple[int, ...] = Field(
        default=(16, 32, 64, 128),
        description="Token lengths texts are padded to (plus the bundle's max_length).",
    )
    default_top_k: int | None = Field(
        default=None,
        ge=1,
        description=("Classes returned when a request gives no top_k; unset: every class, sorted."),
    )
