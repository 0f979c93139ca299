"""Triton's model repository extension over HTTP: the index of a repository directory, and
loading and unloading its bundles by name (``app.core.model_repository``), as tritonclient's
``get_model_repository_index``, ``load_model`` and ``unload_model`` call them. Behind the API
keys; errors in the Open Inference Protocol's body (``app.oip.error_bodies``)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from app.asgi.dependencies import CoreDep
from app.core.model_repository import ModelRepository
from app.core.serving_core import ServingCore
from app.errors import InvalidTensor, RepositoryDisabled
from app.oip.codec import describe
from app.oip.schemas import ErrorBody

router = APIRouter(prefix="/v2/repository", tags=["Model repository (Triton extension)"])

NameParam = Annotated[str, Path(description="The model's name (its bundle manifest's name).")]
MAX_CONTROL_BODY = 64 * 1024  # an index, load or unload body: a few parameters at most


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository_name: StrictStr | None = None
    ready: StrictBool = False


class IndexModel(BaseModel):
    name: str
    version: str
    state: str
    reason: str


class ControlRequest(BaseModel):
    """A load or unload body: only ``parameters`` without content the server would ignore."""

    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "A name that is not a plain name, or parameters this server does not take.",
        401: "API keys are configured and the request has none, or an invalid one.",
        403: "No model repository is configured (FUSIONSERVE_MODEL_REPOSITORY), or several "
        "worker processes serve.",
        404: "The repository has no bundle of that name (load), or none is served (unload).",
        409: "A reload of that model is already running.",
        500: "The bundle could not be loaded; nothing changed.",
        503: "The service is stopping.",
    }.items()
}


def _repository(core: ServingCore) -> ModelRepository:
    if core.repository is None:
        raise RepositoryDisabled("the model repository extension is not available")
    return core.repository


@router.post(
    "/index",
    response_model=list[IndexModel],
    responses=_ERRORS,
    openapi_extra=_body_doc(IndexRequest),
    summary="Index",
)
async def index(core: CoreDep, request: Request) -> list[IndexModel]:
    """The served models (READY, LOADING or UNAVAILABLE when their load failed) and the
    repository's other bundles (UNAVAILABLE); with ``ready``, the READY ones only."""
    body = await _parsed(request, IndexRequest)
    entries = _repository(core).index(ready_only=body.ready)
    return [IndexModel(**entry.__dict__) for entry in entries]


@router.post(
    "/models/{name}/load",
    responses=_ERRORS,
    openapi_extra=_body_doc(ControlRequest),
    summary="Load a model",
)
async def load(core: CoreDep, name: NameParam, request: Request) -> dict[str, str]:
    """Load the repository's bundle ``name`` and serve it once warm (reload it in place if
    it is served already). Answers when it serves."""
    _refuse_parameters(await _parsed(request, ControlRequest))
    await _repository(core).load(name)
    return {}


@router.post(
    "/models/{name}/unload",
    responses=_ERRORS,
    openapi_extra=_body_doc(ControlRequest),
    summary="Unload a model",
)
async def unload(core: CoreDep, name: NameParam, request: Request) -> dict[str, str]:
    """Stop serving ``name``: new requests get 404 at once; answers once the requests
    already holding it are answered."""
    _refuse_parameters(await _parsed(request, ControlRequest), allowed=("unload_dependents",))
    await _repository(core).unload(name)
    return {}


ParsedBody = TypeVar("ParsedBody", IndexRequest, ControlRequest)


async def _parsed(request: Request, model: type[ParsedBody]) -> ParsedBody:
    """The JSON body as ``model``; an empty body (as tritonclient sends the index's) is the
    defaults. ``InvalidTensor`` (400) for anything else."""
    raw = await request.body()
    if len(raw) > MAX_CONTROL_BODY:
        raise InvalidTensor(f"the request body is over {MAX_CONTROL_BODY} bytes")
    if not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidTensor(describe(exc)) from None


def _refuse_parameters(request: ControlRequest, allowed: tuple[str, ...] = ()) -> None:
    """Triton's ``config`` and ``file:`` parameters override a model's files: not here."""
    given = set(request.parameters or {}) - set(allowed)
    if given:
        raise InvalidTensor(
            "load and unload take no parameters here (config and file overrides are not supported)"
        )
