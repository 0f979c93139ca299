"""The profile split: each sample in the part its innermost named frame belongs to, shares
over all threads, and microseconds per request from a server's CPU per request."""

from __future__ import annotations

import pytest

from bench.overhead.profile_split import WORK, part_of, per_request_us, split

MAIN = "thread (1): MainThread"
LOOP = "Runner.run (asyncio/runners.py:118)"
HTTP = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:420)"
ROUTE = "classify (app/rest/routes.py:124)"


def stack(*frames: str) -> str:
    return ";".join((MAIN, *frames))


@pytest.mark.parametrize(
    ("frames", "part"),
    [
        ((LOOP, HTTP, ROUTE, "ImageDecoder.decode (app/preprocess/image.py:173)"), "image_decode"),
        ((LOOP, HTTP, ROUTE, "parse_form (app/rest/forms.py:121)"), "multipart"),
        # The innermost named frame decides: the request id inside the HTTP server's call.
        (
            (LOOP, HTTP, "RequestIdMiddleware.__call__ (app/asgi/request_id.py:65)"),
            "service_middleware",
        ),
        ((LOOP, HTTP), "http_server"),
        ((LOOP, "Starlette.__call__ (starlette/applications.py:96)"), "framework"),
        ((LOOP,), "other"),
        (("Batcher._dispatch (app/core/batching.py:280)",), "batcher"),
        (("run (onnxruntime/capi/onnxruntime_inference_collection.py:270)",), "models"),
    ],
)
def test_a_sample_belongs_to_its_innermost_named_part(frames: tuple[str, ...], part: str) -> None:
    assert part_of(list(frames)) == part


@pytest.mark.parametrize(
    ("packaged", "flat", "part"),
    [
        ("app/core/batching.py", "app/batching.py", "batcher"),
        ("app/core/admission.py", "app/admission.py", "core"),
        ("app/core/registry.py", "app/registry.py", "core"),
        ("app/core/model_runner.py", "app/model_runner.py", "core"),
        ("app/memory/memory_budget.py", "app/memory_budget.py", "core"),
        ("app/observability/metrics.py", "app/metrics.py", "metrics"),
        ("app/core/observer.py", "app/observer.py", "metrics"),
        ("app/rest/forms.py", "app/api/forms.py", "multipart"),
        ("app/asgi/gate.py", "app/api/gate.py", "service_middleware"),
    ],
)
def test_both_layouts_of_app_split_alike(packaged: str, flat: str, part: str) -> None:
    # An A/B against a commit from before app/ was split into packages (ad55cdf) must not
    # leave its core, batcher or middleware in "other" or the framework.
    for path in (packaged, flat):
        frames = [LOOP, HTTP, f"f (/tmp/checkout/{path}:10)"]
        assert part_of(frames) == part, path


def test_shares_over_every_thread_and_microseconds_per_request() -> None:
    raw = "\n".join(
        [
            stack(LOOP, HTTP, ROUTE, "ImageDecoder.decode (app/preprocess/image.py:173)") + " 30",
            stack(LOOP, HTTP) + " 10",
            "thread (2): fusionserve-inference_0;run (onnxruntime/capi/x.py:1) 10",
            stack(LOOP) + " 50",
            "not a sample line",
        ]
    )
    shares = split(raw)
    assert shares["image_decode"] == pytest.approx(0.3)
    assert shares["models"] == pytest.approx(0.1)
    assert shares["http_server"] == pytest.approx(0.1)
    assert shares["other"] == pytest.approx(0.5)
    assert sum(shares.values()) == pytest.approx(1.0)
    split_us = per_request_us(shares, cpu_ms_per_request=2.0)
    assert split_us["image_decode"] == 600.0
    assert split_us["work"] == sum(split_us[part] for part in WORK) == 800.0
    assert split_us["serving_layer"] == 1200.0
    assert split("") == {}
