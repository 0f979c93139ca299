"""Routes over the served bundles: list them, ask one's readiness, reload one in place."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from app.asgi.dependencies import CoreDep, SettingsDep
from app.core.registry import ModelSlot, ModelStatus
from app.errors import ReloadDisabled, ReloadFailed
from app.rest.rest_schemas import ModelInfo, ModelList, ReloadResponse
from app.rest.routes import error_responses
from app.workers.pod_status import PodStatus

router = APIRouter(prefix="/v1/models", tags=["models"])

NameParam = Annotated[str, Path(description="A served bundle's name (its manifest name).")]


def model_info(slot: ModelSlot) -> ModelInfo:
    """What a client needs to know to use ``slot``; labels and abilities once loaded."""
    runner = slot.runner
    manifest = None if runner is None else runner.engine.bundle.manifest
    head = None if manifest is None else manifest.fusion_head
    image_only = head is not None and head.accepts_missing("text")
    text_only = head is not None and head.accepts_missing("image")
    return ModelInfo(
        name=slot.name,
        version=None if manifest is None else manifest.version,
        status=slot.status.value,
        ready=slot.status is ModelStatus.READY,
        default=slot.default,
        path=str(slot.path),
        labels=[] if manifest is None else manifest.labels,
        task=None if manifest is None else manifest.task,
        thresholds=None
        if manifest is None or not manifest.multilabel
        else (manifest.decision_thresholds()),
        accepts_image_only=image_only,
        accepts_text_only=text_only,
        explain=image_only and text_only,
        reloads=slot.reloads,
        draining=len(slot.draining),
        error=slot.error,
    )


async def _named_slot(core: CoreDep, name: NameParam) -> ModelSlot:
    return core.registry.slot(name)


SlotDep = Annotated[ModelSlot, Depends(_named_slot)]


@router.get("", summary="The served bundles")
async def list_models(core: CoreDep) -> ModelList:
    """Every bundle this replica serves, the default first, with its status and labels."""
    return ModelList(models=[model_info(slot) for slot in core.registry.slots])


@router.get("/{name}", responses=error_responses(404), summary="One served bundle")
async def get_model(slot: SlotDep) -> ModelInfo:
    return model_info(slot)


@router.get(
    "/{name}/ready",
    response_model=ModelInfo,
    responses={**error_responses(404), 503: {"model": ModelInfo, "description": "Not loaded yet."}},
    summary="Readiness of one bundle",
)
async def model_ready(core: CoreDep, slot: SlotDep) -> JSONResponse:
    """200 once this bundle serves (the others may still be loading), else 503."""
    info = model_info(slot)
    ready = info.ready and core.lifecycle.accepting
    return JSONResponse(info.model_dump(mode="json"), status_code=200 if ready else 503)


@router.post(
    "/{name}/reload",
    responses=error_responses(403, 404, 409, 500, 503),
    summary="Reload one bundle from its directory without dropping requests",
)
async def reload_model(core: CoreDep, settings: SettingsDep, name: NameParam) -> ReloadResponse:
    """Load the bundle's directory again (new files, new version) beside the version now
    serving, warm it up, switch to it, and let the previous version finish the requests it
    holds. On failure the previous version serves on (500 reload_failed). With several
    worker processes, every worker reloads: the answer comes once they all have (or
    ``workers_reloaded`` says how many had in time)."""
    if not settings.reload_enabled:
        raise ReloadDisabled()
    outcome = await core.registry.reload(name)
    workers, reloaded = 1, 1
    reloads = core.pod.reloads if isinstance(core.pod, PodStatus) else None
    if reloads is not None:  # a worker of several: the others follow (app.workers.pod_reloads)
        bundle = [slot.name for slot in core.registry.slots].index(outcome.name)
        number = reloads.announce(bundle)
        followed, failed = await reloads.wait_for_followers(bundle, number)
        if failed:
            raise ReloadFailed(
                f"{outcome.name!r} is at version {outcome.version} in this worker, but "
                f"worker(s) {', '.join(map(str, failed))} could not reload it and serve the "
                "previous version (their log says why)"
            )
        workers, reloaded = reloads.workers, 1 + followed
    return ReloadResponse(
        name=outcome.name,
        previous_version=outcome.previous_version,
        version=outcome.version,
        load_ms=round(outcome.load_s * 1000.0, 1),
        draining=outcome.draining,
        workers=workers,
        workers_reloaded=reloaded,
    )
