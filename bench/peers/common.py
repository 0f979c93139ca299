"""What every peer server shares with FusionServe: the engine and the response body."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from app.config.settings import Settings
from app.core.engine import Engine, build_engine, warm_up
from app.rest.rest_schemas import rank

CLASSIFY_PATH = "/classify"


def load_engine() -> Engine:
    """Bundle, sessions and warm-up exactly as FusionServe builds them, from FUSIONSERVE_* env
    (the harness sets the same ONNX Runtime thread settings for every system)."""
    logging.basicConfig(level=logging.WARNING)
    engine = build_engine(Settings())
    warm_up(engine)
    return engine


def response_body(engine: Engine, probabilities: np.ndarray) -> dict[str, Any]:
    """The same JSON fields FusionServe answers (minus its timing block)."""
    manifest = engine.bundle.manifest
    predictions = rank(probabilities, manifest.labels, None)
    return {
        "label": predictions[0].label,
        "probability": predictions[0].probability,
        "predictions": [p.model_dump() for p in predictions],
        "bundle": {"name": manifest.name, "version": manifest.version},
    }
