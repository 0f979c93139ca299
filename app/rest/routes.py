"""HTTP routes: classification, health and bundle information."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.asgi.dependencies import CoreDep, SettingsDep
from app.asgi.direct_routes import direct_post
from app.asgi.disconnect import cancel_on_disconnect
from app.asgi.error_responses import report_error
from app.bundle.manifest import Manifest
from app.config.settings import Settings
from app.core.classification import ClassifiedItem, ClassifyInput
from app.core.lifecycle import Status
from app.core.serving_core import ServingCore
from app.errors import InvalidRequest, InvalidText, RequestError
from app.observability.request_context import current_request_id
from app.rest.forms import form_limits, form_openapi, parse_form
from app.rest.rest_answers import classify_json, classify_response
from app.rest.rest_forms import ClassifyBatchForm, ClassifyForm
from app.rest.rest_schemas import (
    BatchClassifyResponse,
    BatchItemResult,
    ClassifyResponse,
    ErrorDetail,
    ErrorResponse,
    LiveResponse,
    ReadyResponse,
)

router = APIRouter()

CLASSIFY = "/classify"
CLASSIFY_BATCH = "/classify/batch"
# Routes whose requests are refused before parsing when the service cannot take them.
CLASSIFY_PATHS = (CLASSIFY, CLASSIFY_BATCH)
LIVEZ = "/livez"
READYZ = "/readyz"
# Open to probes whatever else is protected.
HEALTH_PATHS = (LIVEZ, READYZ)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The multipart body is malformed.",
        413: (
            "Over a configured limit: the request body, a text field, the image file, the "
            "image's pixel count, the memory its decode needs (over the whole decode memory "
            "budget), or the number of items."
        ),
        415: (
            "The body is not multipart/form-data, or the file is not an image in an allowed format."
        ),
        403: "Reloading is switched off (reload_disabled).",
        404: "No served bundle has that name (model_not_found).",
        409: "A reload of this bundle is already running (reload_in_progress).",
        422: (
            "Missing, unexpected or repeated field, a modality the bundle's head needs "
            "(modality_required), explain asked where it cannot be computed "
            "(explain_unsupported), undecodable image or invalid text."
        ),
        500: "Inference failed, or a reload failed (the loaded version serves on).",
        503: (
            "The model is not loaded yet or failed to load, the service is overloaded or its "
            "memory budgets have no room (memory_busy; Retry-After says when to retry), or it "
            "is stopping."
        ),
        504: "The request's deadline passed before it was answered.",
        429: (
            "Overloaded or memory busy, when FUSIONSERVE_OVERLOAD_STATUS is 429 (instead of "
            "503); Retry-After says when to retry."
        ),
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}


# Every status the classification routes answer. A client that leaves gets nothing: the 499
# of ``ClientDisconnected`` is for logs only, so it is not documented.
CLASSIFY_ERRORS = error_responses(400, 404, 413, 415, 422, 429, 500, 503, 504)


@direct_post(
    router,
    CLASSIFY,
    response_model=ClassifyResponse,
    responses=CLASSIFY_ERRORS,
    openapi_extra=form_openapi(ClassifyForm),
    summary="Classify one image with its text description",
)
async def classify(request: Request) -> Response:
    """Class probabilities for an image and its text description, or for one of the two when
    the bundle's head was trained to answer without the other (``missing_modality`` in the
    response then says which was left out)."""
    settings: Settings = request.app.state.settings
    core: ServingCore = request.app.state.core
    parsed = await parse_form(request, ClassifyForm, form_limits(settings))
    form = parsed.fields
    if form.text is None and parsed.sent("text") == "":
        # An empty field counts as left out, but an empty text is not no text.
        raise InvalidText("text must not be empty; leave the field out to send no text")
    work = core.classify(
        [ClassifyInput(form.image, form.text, form.explain)], form.model, priority=form.priority
    )
    result = await cancel_on_disconnect(request, work, settings.disconnect_watch_after_s)
    top_k = form.top_k or settings.default_top_k
    body = classify_json(result.single(), result.manifest, top_k)
    return Response(body, media_type="application/json")


@direct_post(
    router,
    CLASSIFY_BATCH,
    response_model=BatchClassifyResponse,
    responses=CLASSIFY_ERRORS,
    openapi_extra=form_openapi(ClassifyBatchForm),
    summary="Classify several image+text items in one request",
)
async def classify_batch(request: Request) -> Response:
    """Items go through the same batcher as single requests. A bad item gets its own error
    in ``results``; the others are classified as usual."""
    settings: Settings = request.app.state.settings
    core: ServingCore = request.app.state.core
    # More than max_items_per_request files are refused while parsing (app.rest.forms).
    form = (await parse_form(request, ClassifyBatchForm, form_limits(settings))).fields
    if len(form.images) != len(form.texts):
        raise InvalidRequest(
            f"got {len(form.images)} images and {len(form.texts)} texts; they must pair"
        )
    items = [
        ClassifyInput(image, text, form.explain)
        for image, text in zip(form.images, form.texts, strict=True)
    ]
    work = core.classify(items, form.model, priority=form.priority)
    result = await cancel_on_disconnect(request, work, settings.disconnect_watch_after_s)
    top_k = form.top_k or settings.default_top_k
    answer = BatchClassifyResponse(
        results=[
            _item_result(request, i, outcome, top_k, result.manifest)
            for i, outcome in enumerate(result.items)
        ]
    )
    return json_response(answer)


def json_response(body: BaseModel) -> Response:
    """``body`` encoded once, by its model's own serializer (as FastAPI would encode it)."""
    return Response(body.__pydantic_serializer__.to_json(body), media_type="application/json")


def _item_result(
    request: Request,
    index: int,
    outcome: ClassifiedItem | RequestError,
    top_k: int | None,
    manifest: Manifest,
) -> BatchItemResult:
    if not isinstance(outcome, RequestError):
        return BatchItemResult(index=index, result=classify_response(outcome, manifest, top_k))
    report_error(request, outcome)
    detail = ErrorDetail(
        code=outcome.code, message=outcome.message, request_id=current_request_id()
    )
    return BatchItemResult(index=index, error=detail)


@router.get(
    LIVEZ,
    response_model=LiveResponse,
    responses={503: {"model": LiveResponse, "description": "Loading failed."}},
    summary="Liveness",
)
async def livez(core: CoreDep) -> JSONResponse:
    """200 while the process can serve or is still loading; 503 once loading has failed."""
    if core.lifecycle.status is Status.FAILED:
        return JSONResponse(LiveResponse(status="failed").model_dump(), status_code=503)
    return JSONResponse(LiveResponse(status="alive").model_dump())


@router.get(
    READYZ,
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready."}},
    summary="Readiness",
)
async def readyz(core: CoreDep, settings: SettingsDep) -> JSONResponse:
    """200 once every bundle is loaded and warmed up (in every worker process), with the
    default bundle's providers; ``models`` gives each bundle's status (GET
    /v1/models/{name}/ready asks for one)."""
    registry, lifecycle = core.registry, core.lifecycle
    models = {slot.name: slot.status.value for slot in registry.slots}
    default = registry.default
    runner = None if default is None else default.runner
    if lifecycle.status is not Status.READY or runner is None:
        body = ReadyResponse(
            status=lifecycle.status.value, ready=False, detail=lifecycle.error, models=models
        )
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    if waiting := core.workers_not_ready():
        pending = "waiting for the other worker processes: " + ", ".join(waiting)
        body = ReadyResponse(status="ready", ready=False, detail=pending, models=models)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    engine = runner.engine
    device = "cuda" if engine.on_cuda else "cpu"
    detail = None
    if settings.device == "auto" and device == "cpu":
        detail = "device=auto: CUDA is not available, running on CPU"
    body = ReadyResponse(
        status="ready",
        ready=True,
        providers=engine.providers,
        device=device,
        detail=detail,
        models=models,
    )
    return JSONResponse(body.model_dump(exclude_none=True))


@router.get(
    "/info", responses=error_responses(404, 503), summary="Bundle metadata and serving settings"
)
async def info(core: CoreDep, settings: SettingsDep, model: str | None = None) -> dict[str, Any]:
    """Bundle name, version, labels, preprocessing, providers and the settings that matter,
    for the bundle named ``model`` (the default bundle when left out)."""
    with core.lease(model) as runner:
        engine = runner.engine
        stats = runner.stats()
    manifest = engine.bundle.manifest
    return {
        "bundle": {
            "name": manifest.name,
            "version": manifest.version,
            "description": manifest.description,
            "path": str(engine.bundle.root),
        },
        "task": manifest.task,
        "labels": manifest.labels,
        "image_preprocess": manifest.image_encoder.preprocess.model_dump(),
        "text": {"max_length": manifest.text_encoder.max_length},
        "fusion_head": {
            "output_type": manifest.fusion_head.output_type,
            "temperature": manifest.fusion_head.temperature,
            "thresholds": manifest.fusion_head.thresholds,
            "accepts_image_only": manifest.fusion_head.accepts_missing("text"),
            "accepts_text_only": manifest.fusion_head.accepts_missing("image"),
        },
        "providers": engine.providers,
        "execution": {
            "io_binding": engine.pipeline.io_bound,
            "image_decoder": "gpu" if engine.pipeline.decoder.gpu is not None else "cpu",
            "gpu_decode_fallbacks": engine.pipeline.decoder.gpu_fallbacks,
        },
        "stats": stats,
        "settings": settings.model_dump(
            mode="json",
            include={
                "device",
                "intra_op_threads",
                "inter_op_threads",
                "preprocess_threads",
                "inline_decode_max_pixels",
                "inference_threads",
                "inline_batch_max_ms",
                "gc_young_threshold",
                "max_image_bytes",
                "max_image_pixels",
                "min_image_side",
                "jpeg_draft",
                "max_text_chars",
                "max_text_field_bytes",
                "max_image_aspect_ratio",
                "decode_memory_mb",
                "body_memory_mb",
                "default_top_k",
                "max_batch_size",
                "max_batch_wait_ms",
                "max_in_flight",
                "max_queue_wait_s",
                "request_timeout_s",
                "text_cache_size",
                "text_length_buckets",
            },
        ),
    }
