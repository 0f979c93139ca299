"""Whether JPEGs decode on the GPU (``settings.image_decoder``), checked once at start-up."""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from app.bundle.manifest import ImagePreprocess
from app.config.settings import Settings
from app.errors import StartupError
from app.preprocess.geometry import target_side
from app.preprocess.gpu_jpeg import (
    GPU_INTERPOLATIONS,
    TOLERANCE,
    GpuJpegDecoder,
    JpegBackend,
    NvImageCodecBackend,
    nvimgcodec_installed,
)

logger = logging.getLogger(__name__)


def gpu_decoder(
    settings: Settings,
    spec: ImagePreprocess,
    encoder_on_cuda: bool,
    backend: JpegBackend | None = None,
) -> GpuJpegDecoder | None:
    """The GPU JPEG decoder ``settings.image_decoder`` asks for, or None for the CPU.

    ``auto`` takes the GPU when it can and says why not in the log; ``gpu`` raises
    ``StartupError`` when it cannot. ``backend`` replaces nvImageCodec (tests)."""
    if settings.image_decoder == "cpu":
        return None
    reason = _unavailable(spec, encoder_on_cuda, backend)
    if reason is not None:
        if settings.image_decoder == "gpu":
            raise StartupError(f"image_decoder=gpu but {reason}")
        logger.info("images decode on the CPU: %s", reason)
        return None
    try:
        chosen = backend or NvImageCodecBackend(settings.cuda_device_id)
        decoder = GpuJpegDecoder(spec, chosen, settings.cuda_device_id)
        check_against_cpu(decoder, spec)
    except Exception as exc:  # nvImageCodec's and ONNX Runtime's own errors, our check
        if settings.image_decoder == "gpu":
            raise StartupError(f"image_decoder=gpu but GPU decoding failed: {exc}") from exc
        logger.warning("GPU decoding failed its start-up check, decoding on the CPU: %s", exc)
        return None
    logger.info("JPEG images decode on the GPU (%s)", type(chosen).__name__)
    return decoder


def _unavailable(
    spec: ImagePreprocess, encoder_on_cuda: bool, backend: JpegBackend | None
) -> str | None:
    if backend is None and not nvimgcodec_installed():
        return "nvImageCodec is not installed (pip install fusionserve[gpu])"
    if backend is None and not encoder_on_cuda:
        return "the image encoder does not run on CUDA"
    if spec.interpolation not in GPU_INTERPOLATIONS or spec.color_mode == "L":
        return (
            f"the bundle's preprocessing ({spec.color_mode}, {spec.interpolation}) has no GPU "
            f"resize (RGB or BGR with {', '.join(GPU_INTERPOLATIONS)})"
        )
    return None


def check_against_cpu(decoder: GpuJpegDecoder, spec: ImagePreprocess) -> None:
    """Decode one JPEG on both paths; raise ``ValueError`` when they differ by more than
    ``TOLERANCE`` (a broken driver or library gives garbage, not an error)."""
    from app.preprocess.image import ImageDecoder  # image.py imports this package's gpu_jpeg

    jpeg = check_jpeg(2 * target_side(spec))
    cpu = ImageDecoder(spec, max_pixels=len(jpeg) * 64, jpeg_draft=False)(jpeg)
    gpu = decoder.decode_jpeg(jpeg)
    if gpu.shape != cpu.shape:
        raise ValueError(f"GPU decoding gave shape {gpu.shape}, the CPU {cpu.shape}")
    difference = np.abs(gpu - cpu)
    if float(difference.mean()) > TOLERANCE.mean_abs:
        raise ValueError(
            f"GPU and CPU decoding differ by {float(difference.mean()):.4f} on average "
            f"(tolerance {TOLERANCE.mean_abs})"
        )


def check_jpeg(side: int) -> bytes:
    """A smooth colour photograph-like JPEG (gradients), ``side`` x ``3 * side // 4``."""
    height = 3 * side // 4
    y, x = np.mgrid[0:height, 0:side].astype(np.float32)
    planes = (x / side * 255, y / height * 255, (x + y) / (side + height) * 255)
    pixels = np.stack(planes, axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
