"""Engine factories with a bug or a broken model: for the error paths."""

from __future__ import annotations

from collections.abc import Sequence

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.core.pipeline import ItemResult
from app.preprocess.decode_budget import DecodeBudget


def broken_prepare(settings: Settings) -> Engine:
    """An engine whose preprocessing has a bug: an unhandled exception."""
    engine = build_engine(settings)

    def prepare(
        image: bytes, text: str, explain: bool = False, budget: DecodeBudget | None = None
    ) -> PreparedItem:
        raise RuntimeError("a bug, not bad input")

    engine.pipeline.prepare = prepare  # type: ignore[method-assign]
    return engine


def failing_run(settings: Settings) -> Engine:
    """An engine whose model always fails."""
    engine = build_engine(settings)

    def run(items: Sequence[PreparedItem]) -> list[ItemResult]:
        raise RuntimeError("the model broke")

    engine.pipeline.run_items = run  # type: ignore[method-assign]
    return engine
