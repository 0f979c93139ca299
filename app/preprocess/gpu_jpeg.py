"""JPEG decoding on the GPU: nvImageCodec decodes, ONNX Runtime resizes, crops and normalises.

On a GPU node, decoding 1-2 Mpx photos is most of a request's CPU cost. Here a JPEG whose
header ``ImageDecoder.open`` accepted is decoded by a ``JpegBackend`` (nvImageCodec: nvJPEG,
EXIF orientation applied, RGB) into device memory, and a small ONNX graph
(``app/preprocess/graphs``, written by ``models.export.resize_graph``) does what Pillow does on
the CPU path (resize the short side with an antialiased filter, centre-crop, normalise) on the
same device. Only the encoder input, [C, crop, crop] float32, comes back to the host.

The tensor is not bit-identical to the CPU path's: nvJPEG's IDCT and upsampling differ from
libjpeg-turbo's by a level or two, the CPU path decodes large JPEGs at a reduced DCT scale
(``jpeg_draft``) where this one decodes them whole, and the resize runs in float where Pillow
rounds to 8 bits between passes. The stated tolerance (``TOLERANCE``) is tested on the CPU
provider with a Pillow backend and, where CUDA runs, with nvImageCodec.

A backend error, a JPEG the backend cannot decode (CMYK, arithmetic coding...) or any
pixel format other than RGB and greyscale falls back to the CPU decoder for that image.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from app.bundle.manifest import ImagePreprocess
from app.preprocess.geometry import crop_box, resized_size

logger = logging.getLogger(__name__)

GRAPH_DIR = Path(__file__).parent / "graphs"
GPU_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")  # lanczos: CPU only
NVIMGCODEC = "nvidia.nvimgcodec"


@dataclass(frozen=True)
class Tolerance:
    """How far the GPU path's tensor may be from the CPU path's, in the tensor's own units
    (after normalisation), for photographs (smooth content; white noise differs more)."""

    mean_abs: float
    max_abs_quantile: float  # the 99.9th percentile of the absolute difference
    quantile: float = 0.999


# For the default bundle's normalisation (std 128), 0.02 is about 2.5 levels of 255.
TOLERANCE = Tolerance(mean_abs=0.02, max_abs_quantile=0.15)


class GpuDecodeFailed(Exception):
    """The backend could not decode this image: the CPU decoder takes it."""


class JpegBackend(Protocol):
    """Decodes one JPEG to RGB, 8 bits, [H, W, 3], EXIF orientation applied. Returns a host
    ``numpy`` array or a device image with ``__cuda_array_interface__``; raises
    ``GpuDecodeFailed`` (or anything: the caller falls back) for an image it cannot decode."""

    device: str  # "cuda" or "cpu": where the images it returns live

    def decode(self, data: bytes) -> Any: ...


class PillowJpegBackend:
    """A host backend with nvImageCodec's contract, decoded by Pillow: the GPU path's resize
    graph runs on the CPU provider with it (tests, and a check of the graph without a GPU)."""

    device = "cpu"

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))


class NvImageCodecBackend:
    """nvImageCodec's decoder, one per thread (decoders hold per-thread state)."""

    device = "cuda"

    def __init__(self, device_id: int) -> None:
        from nvidia import nvimgcodec  # type: ignore[import-not-found]  # the gpu extra

        self._codec: Any = nvimgcodec
        self._device_id = device_id
        self._params = nvimgcodec.DecodeParams(
            apply_exif_orientation=True,
            color_spec=nvimgcodec.ColorSpec.SRGB,
            sample_format=nvimgcodec.SampleFormat.I_RGB,  # greyscale too: [H, W, 3]
        )
        self._local = threading.local()

    def decode(self, data: bytes) -> Any:
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._codec.Decoder(device_id=self._device_id)
            self._local.decoder = decoder
        image = decoder.decode(self._codec.CodeStream(data), params=self._params)
        if image is None:
            raise GpuDecodeFailed("nvImageCodec could not decode the image")
        return image


def nvimgcodec_installed() -> bool:
    try:
        return importlib.util.find_spec(NVIMGCODEC) is not None
    except ModuleNotFoundError:  # no `nvidia` namespace package at all
        return False


class GpuJpegDecoder:
    """Decode a JPEG with ``backend`` and turn it into the encoder input on the backend's
    device (``decode_jpeg``); the resize graph runs in an ONNX Runtime session there."""

    def __init__(self, spec: ImagePreprocess, backend: JpegBackend, device_id: int = 0) -> None:
        if spec.interpolation not in GPU_INTERPOLATIONS or spec.color_mode == "L":
            raise ValueError(
                f"GPU decoding supports RGB/BGR bundles resized with {GPU_INTERPOLATIONS}"
            )
        self.spec = spec
        self.backend = backend
        self._device_id = device_id
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the nearest graph's Pillow-style centres log a warning
        providers: list[Any] = (
            [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
            if backend.device == "cuda"
            else ["CPUExecutionProvider"]
        )
        graph = GRAPH_DIR / f"resize_crop_{spec.interpolation}.onnx"
        self._session = ort.InferenceSession(str(graph), options, providers=providers)
        # The graph normalises RGB planes; a BGR bundle's mean and std are in BGR order.
        order = slice(None, None, -1) if spec.color_mode == "BGR" else slice(None)
        shape = (len(spec.mean), 1, 1)
        # (p * r - m) / s == (p - m / r) / (s / r): the graph's pixels stay in 0..255.
        rescale = spec.rescale_factor
        mean = [value / rescale for value in spec.mean[order]]
        std = [value / rescale for value in spec.std[order]]
        self._mean = np.asarray(mean, dtype=np.float32).reshape(shape)
        self._std = np.asarray(std, dtype=np.float32).reshape(shape)

    def decode_jpeg(self, data: bytes) -> np.ndarray:
        """The encoder input for one JPEG; raises ``GpuDecodeFailed`` when the backend cannot
        decode it (the caller decodes it on the CPU)."""
        try:
            image = self.backend.decode(data)
        except GpuDecodeFailed:
            raise
        except Exception as exc:  # nvImageCodec raises its own errors for unsupported files
            raise GpuDecodeFailed(f"{type(exc).__name__}: {exc}") from exc
        height, width = _hwc_shape(image)
        binding = self._session.io_binding()
        if isinstance(image, np.ndarray):
            binding.bind_cpu_input("image", np.ascontiguousarray(image))
        else:
            interface = image.__cuda_array_interface__
            if interface.get("strides") not in (None, (width * 3, 3, 1)):
                raise GpuDecodeFailed(f"the decoded image has row padding {interface['strides']}")
            binding.bind_input(
                "image", "cuda", self._device_id, np.uint8, [height, width, 3],
                interface["data"][0],
            )  # fmt: skip
        sizes, starts, ends = self.geometry(width, height)
        for name, value in (("sizes", sizes), ("starts", starts), ("ends", ends)):
            binding.bind_cpu_input(name, value)
        binding.bind_cpu_input("mean", self._mean)
        binding.bind_cpu_input("std", self._std)
        binding.bind_output("pixels", "cpu")
        binding.synchronize_inputs()  # the decode ran on the decoder's stream
        self._session.run_with_iobinding(binding)
        (pixels,) = binding.copy_outputs_to_cpu()
        del image  # the device buffer may be freed only after the run
        return self._layout(pixels)

    def geometry(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resized (H, W), and the crop's start and end (H, W): as ``ImageDecoder``."""
        new_w, new_h = resized_size(self.spec, (width, height))
        left, top, right, bottom = crop_box(self.spec, (new_w, new_h))
        return (
            np.asarray([new_h, new_w], dtype=np.int64),
            np.asarray([top, left], dtype=np.int64),
            np.asarray([bottom, right], dtype=np.int64),
        )

    def _layout(self, pixels: np.ndarray) -> np.ndarray:
        """[C, H, W] RGB from the graph -> the manifest's colour order and layout."""
        if self.spec.color_mode == "BGR":
            pixels = pixels[::-1]
        if self.spec.layout == "NHWC":
            pixels = pixels.transpose(1, 2, 0)
        return np.ascontiguousarray(pixels, dtype=np.float32)


def _hwc_shape(image: Any) -> tuple[int, int]:
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise GpuDecodeFailed(f"the backend returned shape {shape}, not [H, W, 3]")
    return int(shape[0]), int(shape[1])
