"""An app whose model calls can be held at a gate, and an async client for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.core.model_runner import ModelRunner
from app.core.pipeline import ItemResult
from app.core.serving_core import ServingCore
from app.main import create_app
from tests.support.images import encode_image, photo

# A held model blocks the thread that runs its batch: that must be the inference pool's, never
# the event loop's, so a gated app's batches do not run inline (app.core.batching), whatever
# its warm-up measured.
IN_POOL: dict[str, object] = {"inline_batch_max_ms": 0.0}

TEXTS = ["a cat", "the big blue dog photo", "bird", "a small red bird of the dog", "cat cat"]


@dataclass
class Gate:
    """Holds the model's calls when asked to; open (calls pass) when made by ``opened``."""

    open: threading.Event
    entered: threading.Event

    @classmethod
    def opened(cls) -> Gate:
        gate = cls(threading.Event(), threading.Event())
        gate.open.set()  # open for the warm-up and until a test holds it
        return gate

    def hold(self) -> None:
        """Make the next model call block until ``open`` is set; ``entered`` marks it."""
        self.open.clear()
        self.entered.clear()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


def gated_factory(gate: Gate) -> object:
    def factory(settings: Settings) -> Engine:
        engine = build_engine(settings)
        real_run = engine.pipeline.run_items

        def run(items: Sequence[PreparedItem]) -> list[ItemResult]:
            gate.entered.set()
            assert gate.open.wait(10), "test never opened the gate"
            return real_run(items)

        engine.pipeline.run_items = run  # type: ignore[method-assign]
        return engine

    return factory


def gated_app(settings: Settings, gate: Gate) -> FastAPI:
    """An app on ``settings`` whose model calls pass ``gate``, its batches in the pool."""
    return create_app(
        settings.model_copy(update=IN_POOL),
        engine_factory=gated_factory(gate),  # type: ignore[arg-type]
    )


async def ready_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            yield client


def numbered_form(i: int) -> tuple[dict[str, tuple[str, bytes, str]], dict[str, str]]:
    image = encode_image(photo(60 + 7 * i, 50 + 3 * i, seed=i))
    return {"image": ("i.png", image, "image/png")}, {"text": TEXTS[i % len(TEXTS)]}


def default_runner(app: FastAPI) -> ModelRunner:
    core: ServingCore = app.state.core
    slot = core.registry.default
    assert slot is not None
    assert slot.runner is not None
    return slot.runner
