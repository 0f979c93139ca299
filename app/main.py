"""Application factory. Nothing is loaded at import time: models load in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api.errors import install_error_handlers
from app.api.forms import form_limits
from app.api.gate import RequestGate
from app.api.routes import CLASSIFY_PATHS, router
from app.api.state import ServiceState, Status
from app.engine import Engine, build_engine, warm_up
from app.service import Classifier
from app.settings import Settings

logger = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], Engine]


def _terminate() -> None:
    # Under a plain `uvicorn --factory` run this is a graceful stop; the CLI passes its own hook.
    signal.raise_signal(signal.SIGTERM)


async def _load(
    state: ServiceState,
    settings: Settings,
    factory: EngineFactory,
    on_startup_failure: Callable[[], None],
) -> None:
    try:
        engine = await asyncio.to_thread(factory, settings)
        if settings.warmup:
            await asyncio.to_thread(warm_up, engine, settings.max_batch_size)
    except Exception as exc:  # any failure to load leaves the service failed, never half-ready
        state.status, state.error = Status.FAILED, str(exc)
        logger.critical("start-up failed: %s", exc)
        if settings.exit_on_startup_failure:
            on_startup_failure()
        return
    if state.status is Status.LOADING:
        classifier = Classifier(engine, settings)
        classifier.start()
        state.classifier = classifier
        state.status = Status.READY


def create_app(
    settings: Settings | None = None,
    *,
    engine_factory: EngineFactory = build_engine,
    on_startup_failure: Callable[[], None] = _terminate,
) -> FastAPI:
    """Build the FastAPI app. The bundle loads in the background; /readyz says when it is done.

    If loading fails and ``exit_on_startup_failure`` is set, ``on_startup_failure`` stops the
    server so that an orchestrator restarts it rather than routing to a dead replica.
    """
    settings = settings or Settings()
    state = ServiceState()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(state, settings, engine_factory, on_startup_failure))
        try:
            yield
        finally:
            if state.status is not Status.FAILED:
                state.status = Status.STOPPING
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            if state.classifier is not None:
                await state.classifier.stop()

    app = FastAPI(
        title="FusionServe",
        version=__version__,
        summary="Image + text classification on ONNX Runtime",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.fusion = state
    install_error_handlers(app)
    app.include_router(router, form_limits=form_limits(settings))
    app.add_middleware(
        RequestGate,
        paths=CLASSIFY_PATHS,
        media_type="multipart/form-data",
        refusal=state.refusal,
        max_body_bytes=settings.max_body_bytes,
    )
    return app
