"""Image sources from local checkpoints: transformers vision models, and timm models.

``load_hf_image_source`` reads a transformers checkpoint directory (``config.json``, the weights,
``preprocessor_config.json``; nothing is downloaded). Its module wraps the model (float32, eval
mode, eager attention) and gives one float32 embedding per image:

=========================================  ===================================================
``model_type``                             embedding
=========================================  ===================================================
``vit``, ``deit``                          the CLS token of ``last_hidden_state`` (after the
                                           final layer norm; DeiT's distillation token unused)
``dinov2``                                 ``pooler_output`` (the layer-normed CLS token)
``beit``                                   ``pooler_output`` (mean of the patch tokens, layer
                                           normed; the CLS token when ``use_mean_pooling`` is
                                           off)
``convnext``                               ``pooler_output`` (global average, layer normed)
``swin``                                   ``pooler_output`` (global average of the last stage)
``resnet``                                 ``pooler_output`` (global average), flattened
``clip``, ``clip_vision_model``            ``image_embeds``: the projected embedding of
                                           ``CLIPVisionModelWithProjection`` (a full CLIP
                                           checkpoint's vision tower and projection)
``siglip``, ``siglip_vision_model``        ``pooler_output`` (the attention-pooling head) of
                                           ``SiglipVisionModel`` (a full SigLIP checkpoint's
                                           vision tower)
=========================================  ===================================================

Checkpoints saved from a task model (``ViTForImageClassification``...) load their base model;
a checkpoint that lacks any weight the embedding needs is refused, never filled at random.

The preprocessing is the checkpoint's PIL-backend image processor mapped onto the manifest
(``hf_image_preprocess``). The reference is that processor (``<Model>ImageProcessorPil``) on
the raw images, then the same module under ``torch.no_grad()``. The processor runs with
``do_convert_rgb=True`` (its own ``convert_to_rgb``: transparency composited on white, as the
service does), which changes nothing for RGB images and gives the others the three channels
the model needs; it applies no EXIF orientation. There are no alternatives: the processors'
torchvision backend is the default transformers would pick, but torchvision cannot be imported
with this build of torch, so it cannot be measured here.

``load_timm_image_source`` does the same for a timm checkpoint directory (``config.json`` with
``architecture`` and ``pretrained_cfg``, and the weights): pooled features (``num_classes=0``)
and timm's own evaluation transform as the reference. timm needs torchvision, so where that
cannot be imported the loader says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.encoders.encoder_sources import ImageSource, SourceError
from models.encoders.hf_image_preprocess import image_preprocess_from_hf, timm_preprocess

if TYPE_CHECKING:
    from app.bundle.manifest import ImagePreprocess

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
# One of these holds the weights (a sharded checkpoint: its index).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
Output = Literal["cls", "pooler", "image_embeds"]


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` is loaded and embedded."""

    model_class: str  # a transformers class name
    output: Output
    description: str  # for the reference's name
    model_kwargs: tuple[tuple[str, object], ...] = ()
    vision_tower: bool = False  # a two-tower config: load its vision_config


_CLIP = Family("CLIPVisionModelWithProjection", "image_embeds", "image_embeds", vision_tower=True)
_SIGLIP = Family("SiglipVisionModel", "pooler", "pooler_output", vision_tower=True)
FAMILIES: dict[str, Family] = {
    "vit": Family("ViTModel", "cls", "CLS", (("add_pooling_layer", False),)),
    "deit": Family("DeiTModel", "cls", "CLS", (("add_pooling_layer", False),)),
    "beit": Family("BeitModel", "pooler", "pooler_output"),
    "convnext": Family("ConvNextModel", "pooler", "pooler_output"),
    "swin": Family("SwinModel", "pooler", "pooler_output"),
    "dinov2": Family("Dinov2Model", "pooler", "pooler_output"),
    "resnet": Family("ResNetModel", "pooler", "pooler_output flattened"),
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
    "siglip": _SIGLIP,
    "siglip_vision_model": _SIGLIP,
}
# The family a model_type is reported as (a vision-only checkpoint is its model's family).
_FAMILY_NAMES = {"clip_vision_model": "clip", "siglip_vision_model": "siglip"}


class HFImageEmbedding(nn.Module):
    """A transformers vision model as ``pixel_values`` [n, 3, h, w] -> float32 [n, dim]."""

    def __init__(self, model: nn.Module, output: Output) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        if self.output == "cls":
            embedding = out.last_hidden_state[:, 0]
        elif self.output == "image_embeds":
            embedding = out.image_embeds
        else:
            embedding = out.pooler_output
        return torch.flatten(embedding, 1).to(torch.float32)


class PooledFeatures(nn.Module):
    """A model whose output is already the embedding (timm with ``num_classes=0``), as
    float32 [n, dim]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model(pixel_values), 1).to(torch.float32)


def load_hf_image_source(directory: Path) -> ImageSource:
    """The image source of a local transformers vision checkpoint (see the module docstring
    for the families and their embeddings); ``SourceError`` for a missing file, an unknown
    ``model_type``, missing weights or preprocessing the manifest cannot express."""
    directory = Path(directory)
    config = _read_json(directory, CONFIG_FILE)
    _require(directory, PREPROCESSOR_FILE)
    _weights(directory)
    model_type = config.get("model_type")
    family = FAMILIES.get(str(model_type))
    if family is None:
        raise SourceError(
            f"{directory / CONFIG_FILE}: model_type {model_type!r} is not a supported image "
            f"encoder; supported: {', '.join(sorted(FAMILIES))}",
            field="model_type",
            value=model_type,
        )
    processor = _processor(directory)
    preprocess = image_preprocess_from_hf(processor_settings(processor))
    module = HFImageEmbedding(_model(directory, family), family.output).eval()
    dim = _embedding_dim(module, preprocess, directory)
    processor_name = type(processor).__name__

    def reference(images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, dim), dtype=np.float32)
        batch = processor(list(images), return_tensors="pt", do_convert_rgb=True)
        return _embed(module, batch["pixel_values"])

    model_name = type(module.model).__name__
    return ImageSource(
        family=_FAMILY_NAMES.get(str(model_type), str(model_type)),
        module=module,
        preprocess=preprocess,
        embedding_dim=dim,
        reference=reference,
        reference_name=f"transformers {processor_name} + {model_name} ({family.description})",
    )


def processor_settings(processor: Any) -> dict[str, Any]:
    """A PIL-backend image processor's settings, defaults filled, as plain values (``size``
    and ``crop_size`` as dicts of their set sides), with ``image_processor_type``."""
    settings: dict[str, Any] = {"image_processor_type": type(processor).__name__}
    for name in processor._valid_kwargs_names:
        value: Any = getattr(processor, name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):  # SizeDict
            value = dataclasses.asdict(value)
        if isinstance(value, dict):  # a size: the sides that are set
            value = {key: side for key, side in value.items() if side is not None}
        settings[name] = value
    return settings


def load_timm_image_source(directory: Path) -> ImageSource:
    """The image source of a local timm checkpoint directory: ``config.json`` (its
    ``architecture`` and ``pretrained_cfg``) and the weights; pooled features, timm's own
    evaluation transform as the reference. ``SourceError`` when timm cannot be imported."""
    directory = Path(directory)
    try:
        timm = importlib.import_module("timm")
        timm_data = importlib.import_module("timm.data")
    except Exception as exc:  # ImportError, or torchvision failing inside it
        raise SourceError(
            f"timm cannot be imported ({type(exc).__name__}: {exc}): timm needs torchvision, "
            "which must be installed and built for this torch; install a matching "
            "torchvision, or export the model through transformers or the Python API"
        ) from exc
    config = _read_json(directory, CONFIG_FILE)
    weights = _weights(directory)
    architecture = config.get("architecture")
    if not isinstance(architecture, str):
        raise SourceError(f"{directory / CONFIG_FILE} names no timm 'architecture'")
    try:
        model = timm.create_model(
            architecture,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(weights)},
            num_classes=0,
        )
    except Exception as exc:
        raise SourceError(f"timm could not build {architecture!r} from {weights}: {exc}") from exc
    pretrained_cfg = config.get("pretrained_cfg") or dict(model.pretrained_cfg)
    data_config = dict(timm_data.resolve_data_config({}, pretrained_cfg=pretrained_cfg))
    preprocess = timm_preprocess(data_config)
    transform: Callable[[Image.Image], torch.Tensor] = timm_data.create_transform(
        **data_config, is_training=False
    )
    module = PooledFeatures(model).eval()
    dim = _embedding_dim(module, preprocess, directory)

    def reference(images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, dim), dtype=np.float32)
        # timm's loaders convert to RGB as they open an image (alpha dropped).
        return _embed(module, torch.stack([transform(i.convert("RGB")) for i in images]))

    return ImageSource(
        family="timm",
        module=module,
        preprocess=preprocess,
        embedding_dim=dim,
        reference=reference,
        reference_name=(
            f"timm {architecture} + transforms_imagenet_eval "
            f"({data_config.get('crop_mode') or 'center'}), pooled features"
        ),
    )


def _require(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise SourceError(f"{path} not found: the checkpoint needs {name}")
    return path


def _read_json(directory: Path, name: str) -> dict[str, Any]:
    path = _require(directory, name)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SourceError(f"{path} is not a JSON object")
    return value


def _weights(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise SourceError(
        f"{directory / WEIGHT_FILES[0]} not found: the checkpoint has no weights "
        f"({', '.join(WEIGHT_FILES)})"
    )


def _processor(directory: Path) -> Any:
    from transformers import AutoImageProcessor
    from transformers.image_processing_backends import PilBackend

    # Typed differently across transformers 5 releases (unannotated in some): called as Any.
    auto: Any = AutoImageProcessor
    try:
        processor = auto.from_pretrained(directory, backend="pil", local_files_only=True)
    except Exception as exc:
        raise SourceError(f"{directory / PREPROCESSOR_FILE}: no image processor: {exc}") from exc
    if not isinstance(processor, PilBackend):
        raise SourceError(
            f"{directory / PREPROCESSOR_FILE}: {type(processor).__name__} has no PIL backend; "
            "its preprocessing cannot be mapped exactly"
        )
    return processor


def _model(directory: Path, family: Family) -> nn.Module:
    import transformers

    model_class = getattr(transformers, family.model_class)
    kwargs: dict[str, Any] = dict(family.model_kwargs)
    if family.vision_tower:
        kwargs["config"] = _vision_config(directory)
    try:
        model, info = model_class.from_pretrained(
            directory,
            dtype=torch.float32,
            attn_implementation="eager",
            local_files_only=True,
            output_loading_info=True,
            **kwargs,
        )
    except Exception as exc:
        raise SourceError(f"{directory}: {family.model_class} cannot load: {exc}") from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SourceError(
            f"{directory}: the weights lack {len(missing)} tensor(s) that "
            f"{family.model_class} needs ({shown}); refused rather than initialised at random"
        )
    if getattr(model.config, "vision_use_head", True) is False:
        raise SourceError(
            f"{directory}: this SigLIP vision tower has no attention-pooling head "
            "(vision_use_head false), so no pooler_output to embed with"
        )
    loaded: nn.Module = model
    return loaded


def _vision_config(directory: Path) -> Any:
    """The vision tower's config; a full CLIP or SigLIP config's ``vision_config``, with CLIP's
    top-level ``projection_dim`` (the vision config's own defaults to 512)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return config
    if hasattr(config, "projection_dim"):
        vision.projection_dim = config.projection_dim
    return vision


def _embedding_dim(module: nn.Module, preprocess: ImagePreprocess, directory: Path) -> int:
    """The module's embedding width, from one blank image of the preprocessing's size (which
    also proves the two fit together)."""
    height, width = preprocess.output_size
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, preprocess.channels, height, width))
    except Exception as exc:
        raise SourceError(
            f"{directory}: the model does not take the preprocessing's {height}x{width} "
            f"tensors: {exc}"
        ) from exc
    if out.ndim != 2 or out.shape[0] != 1:
        raise SourceError(f"{directory}: the embedding has shape {tuple(out.shape)}, not [1, dim]")
    return int(out.shape[1])


def _embed(module: nn.Module, pixel_values: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = module(pixel_values.to(torch.float32))
    return np.asarray(out.detach().numpy(), dtype=np.float32)
