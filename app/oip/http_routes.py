"""Open Inference Protocol (KServe v2) REST routes, with Triton's binary tensor data extension.

Health, server and model metadata, model readiness and inference, so that FusionServe runs
as a KServe custom runtime and answers standard clients (tritonclient, KServe's
InferenceRESTClient). A thin adapter over the serving core (``app.core.serving_core``), as /classify
is: limits, deadlines, overload refusals, metrics and authentication apply alike. Tensors and
bodies are in ``app.oip``; error bodies under /v2 are shaped by ``app.oip.error_bodies``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app import __version__
from app.asgi.dependencies import CoreDep
from app.asgi.direct_routes import direct_post
from app.asgi.disconnect import cancel_on_disconnect
from app.asgi.error_responses import report_error
from app.config.settings import Settings
from app.core.classification import ClassifiedItem, ClassifyResult
from app.core.lifecycle import Status
from app.core.model_runner import ModelRunner
from app.core.serving_core import ServingCore
from app.errors import RequestError
from app.oip.classifier_model import (
    OUTPUTS,
    ItemFailed,
    Limits,
    model_metadata,
    output_tensors,
    request_items,
)
from app.oip.codec import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    check_model_names,
    decode_content,
    encode_response,
    parse_request,
    select_outputs,
)
from app.oip.schemas import (
    ErrorBody,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

SERVER = "/v2"
LIVE = "/v2/health/live"
READY = "/v2/health/ready"
MODEL = "/v2/models/{model_name}"
MODEL_VERSION = "/v2/models/{model_name}/versions/{model_version}"
INFER_ROUTE = MODEL + "/infer"  # the route template that names infer requests' spans
# Open to probes whatever else is protected, as /livez and /readyz.
V2_HEALTH_PATHS = (LIVE, READY)
SERVER_NAME = "fusionserve"
EXTENSIONS = ["binary_tensor_data"]

_INFER_PATH = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer")


def is_infer_path(path: str) -> bool:
    """Whether ``path`` is an infer route's (for the request gate, before routing)."""
    return _INFER_PATH.fullmatch(path) is not None


router = APIRouter(tags=["Open Inference Protocol (v2)"])


@contextmanager
def v2_model(request: Request, name: str, version: str | None = None) -> Iterator[ModelRunner]:
    """The runner serving bundle ``name`` (at ``version`` if given): 404 for a model or
    version not served here, 503 while it or the service cannot classify."""
    core: ServingCore = request.app.state.core
    with core.lease(name, version) as runner:
        yield runner


_DESCRIPTIONS = {
    400: "Malformed request or tensors, or an item that cannot be classified (the message "
    "names it).",
    401: "API keys are configured and the request has none, or an invalid one.",
    404: "No such model, or no such version of it.",
    413: "Over a configured limit: the body, an image (its size, pixels or decode memory), a "
    "text, or the number of items.",
    415: "A Content-Encoding other than gzip, deflate or identity.",
    500: "Inference failed.",
    503: "The model is not loaded yet or failed to load, the service is overloaded or its "
    "memory budgets have no room (Retry-After says when to retry), or it is stopping.",
    504: "The request's deadline passed before it was answered.",
    429: "Overloaded, when FUSIONSERVE_OVERLOAD_STATUS is 429 (instead of 503); Retry-After.",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


@router.get(
    SERVER, response_model=ServerMetadata, responses=_errors(401), summary="Server metadata"
)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)


@router.get(
    LIVE,
    response_model=ServerLive,
    responses={503: {"model": ServerLive, "description": "Loading failed."}},
    summary="Server live",
)
async def server_live(core: CoreDep) -> JSONResponse:
    """200 while the process can serve or is still loading; 503 once loading has failed
    (as /livez)."""
    live = core.lifecycle.status is not Status.FAILED
    return JSONResponse(ServerLive(live=live).model_dump(), status_code=200 if live else 503)


@router.get(
    READY,
    response_model=ServerReady,
    responses={503: {"model": ServerReady, "description": "Not ready."}},
    summary="Server ready",
)
async def server_ready(core: CoreDep) -> JSONResponse:
    """200 once the model is loaded and warm; 503 while loading, failed or stopping (as
    /readyz)."""
    ready = core.lifecycle.status is Status.READY and not core.workers_not_ready()
    return JSONResponse(ServerReady(ready=ready).model_dump(), status_code=200 if ready else 503)


@router.get(
    MODEL,
    response_model=ModelMetadata,
    responses=_errors(401, 404, 503),
    summary="Model metadata",
)
async def model(request: Request, model_name: str) -> ModelMetadata:
    """Inputs, outputs, version and labels of the model."""
    with v2_model(request, model_name) as runner:
        return model_metadata(runner.engine.bundle.manifest)


@router.get(
    MODEL_VERSION,
    response_model=ModelMetadata,
    responses=_errors(401, 404, 503),
    summary="Model metadata (one version)",
)
async def model_version(request: Request, model_name: str, model_version: str) -> ModelMetadata:
    with v2_model(request, model_name, model_version) as runner:
        return model_metadata(runner.engine.bundle.manifest)


@router.get(
    MODEL + "/ready",
    response_model=ModelReady,
    responses=_errors(401, 404, 503),
    summary="Model ready",
)
async def model_ready(request: Request, model_name: str) -> ModelReady:
    """200 when the model is loaded and the service can classify; 404 for a model not served
    here, 503 while it is not ready."""
    with v2_model(request, model_name):
        return ModelReady(name=model_name, ready=True)


@router.get(
    MODEL_VERSION + "/ready",
    response_model=ModelReady,
    responses=_errors(401, 404, 503),
    summary="Model ready (one version)",
)
async def model_version_ready(request: Request, model_name: str, model_version: str) -> ModelReady:
    with v2_model(request, model_name, model_version):
        return ModelReady(name=model_name, ready=True)


def _inline_schema(model: type[InferenceRequest]) -> dict[str, Any]:
    """The model's JSON schema with its definitions inlined (OpenAPI's ``#`` is the whole
    document, so the schema's own ``#/$defs`` references cannot stay)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


INFER_DOC = {
    "requestBody": {
        "required": True,
        "description": (
            "The inference request's JSON object. With the binary tensor data extension, the "
            "inputs' data follow it in the body (each input's `parameters.binary_data_size` "
            f"bytes, in order) and the `{HEADER_LENGTH}` header gives the JSON object's length."
        ),
        "content": {"application/json": {"schema": _inline_schema(InferenceRequest)}},
    }
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The outputs. When an output is asked for as binary data, its data follow the "
            f"JSON object and the `{HEADER_LENGTH}` header gives the object's length."
        ),
        "content": {BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    },
    **_errors(400, 401, 404, 413, 415, 429, 500, 503, 504),
}


@direct_post(
    router,
    MODEL + "/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_DOC,
    summary="Inference",
)
async def infer(request: Request, model_name: str) -> Response:
    """Classify a batch of items: inputs `image` (BYTES: image files; base64 strings in JSON)
    and `text` (BYTES, UTF-8), one element per item; outputs `probabilities` (FP32
    [N, classes], in label order) and `label` (BYTES [N])."""
    return await _infer(request, model_name)


@direct_post(
    router,
    MODEL_VERSION + "/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_DOC,
    summary="Inference (one version)",
)
async def infer_version(request: Request, model_name: str, model_version: str) -> Response:
    return await _infer(request, model_name, model_version)


async def _infer(request: Request, name: str, version: str | None = None) -> Response:
    settings: Settings = request.app.state.settings
    body = decode_content(
        await request.body(), request.headers.get("content-encoding"), settings.max_body_bytes
    )
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH))
    selection = select_outputs(parsed.request, OUTPUTS)
    core: ServingCore = request.app.state.core
    with core.lease(name, version) as runner:  # the head the inputs are checked against
        served = runner.engine.bundle.manifest
    check_model_names(parsed.request, model=name, version=served.version)
    items = request_items(parsed.inputs, served.fusion_head, Limits.from_settings(settings))
    parameters = parsed.request.parameters
    priority = None if parameters is None else parameters.priority
    work = core.classify(items, name, version, priority)
    result = await cancel_on_disconnect(request, work, settings.disconnect_watch_after_s)
    manifest = result.manifest
    encoded = encode_response(
        model_name=manifest.name,
        model_version=manifest.version,
        request_id=parsed.request.id,
        outputs=output_tensors(_classified(request, result), manifest),
        selection=selection,
    )
    if encoded.header_length is None:
        return Response(encoded.body, media_type="application/json")
    return Response(
        encoded.body,
        media_type=BINARY_CONTENT_TYPE,
        headers={HEADER_LENGTH: str(encoded.header_length)},
    )


def _classified(request: Request, result: ClassifyResult) -> list[ClassifiedItem]:
    """The items' answers, or ``ItemFailed`` for the first failed item (each failure is
    reported, as /classify/batch does, so that metrics count them alike)."""
    failures = [(i, o) for i, o in enumerate(result.items) if isinstance(o, RequestError)]
    for _, error in failures:
        report_error(request, error)
    if failures:
        raise ItemFailed(*failures[0])
    return [o for o in result.items if not isinstance(o, RequestError)]
