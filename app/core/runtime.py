"""ONNX Runtime sessions: provider choice (CUDA -> CPU), thread settings, provider reporting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort

from app.config.settings import Settings
from app.errors import StartupError

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


Providers = list[str | tuple[str, dict[str, Any]]]


def requested_providers(settings: Settings) -> Providers:
    """Providers to ask for, in priority order, for ``settings.device``."""
    available = ort.get_available_providers()
    if settings.device == "cpu":
        return [CPU]
    if CUDA not in available:
        if settings.device == "cuda":
            raise StartupError(
                f"device=cuda but ONNX Runtime has no {CUDA} (available: {available}); "
                "install onnxruntime-gpu (fusionserve[gpu]) or set FUSIONSERVE_DEVICE=auto|cpu"
            )
        logger.warning("CUDA provider not available (have %s): running on CPU", available)
        return [CPU]
    providers: Providers = [(CUDA, cuda_options(settings)), CPU]
    if settings.tensorrt:
        if TENSORRT in available:
            providers.insert(0, (TENSORRT, tensorrt_options(settings)))
        else:
            logger.warning("tensorrt is set but ONNX Runtime has no %s: using CUDA", TENSORRT)
    return providers


def cuda_options(settings: Settings) -> dict[str, Any]:
    """The CUDA provider's options from the settings."""
    options: dict[str, Any] = {
        "device_id": settings.cuda_device_id,
        "arena_extend_strategy": settings.cuda_arena_extend_strategy,
    }
    if settings.cuda_mem_limit_mb:
        options["gpu_mem_limit"] = settings.cuda_mem_limit_mb * 2**20
    return options


def tensorrt_options(settings: Settings) -> dict[str, Any]:
    """The TensorRT provider's options: the same GPU, engines cached between runs."""
    cache = str(settings.tensorrt_cache_dir)
    return {
        "device_id": settings.cuda_device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
    }


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    return options


def create_session(
    path: Path, settings: Settings, providers: Providers | None = None
) -> ort.InferenceSession:
    """Create one session and check which providers it really got (CUDA can fall back silently).

    ``providers`` defaults to ``requested_providers(settings)``; pass it to decide once for
    several sessions.
    """
    if providers is None:
        providers = requested_providers(settings)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(settings), providers=providers
        )
    except Exception as exc:  # ORT raises its own untyped errors (bad graph, CUDA init failure)
        raise StartupError(f"ONNX Runtime could not load {path.name}: {exc}") from exc
    active = session.get_providers()
    if settings.device == "cuda" and CUDA not in active:
        raise StartupError(
            f"device=cuda but {path.name} runs on {active}: the CUDA provider failed to "
            "initialise (check the driver, CUDA and cuDNN libraries)"
        )
    if settings.device == "auto" and CUDA in ort.get_available_providers() and CUDA not in active:
        logger.warning("%s: CUDA provider failed to initialise, fell back to %s", path.name, active)
    return session


def active_providers(session: ort.InferenceSession) -> list[str]:
    return list(session.get_providers())
