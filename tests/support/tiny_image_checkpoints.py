"""Tiny, randomly initialised transformers vision checkpoints, written offline.

Each writer makes a directory as ``save_pretrained`` leaves it: ``config.json``,
``model.safetensors`` and ``preprocessor_config.json`` (the family's PIL processor with its
typical settings scaled down to 32-pixel inputs). Weights are seeded (``torch.manual_seed``), so
a writer gives the same checkpoint every time; each writes in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BILINEAR, BICUBIC = 2, 3  # PIL.Image.Resampling

# A two-layer ViT-style encoder on 32x32 inputs in 8x8 patches.
_TRANSFORMER: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
_TEXT: dict[str, Any] = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "vocab_size": 100,
    "max_position_embeddings": 16,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 1,
}


def _save(directory: Path, model: Any, processor: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def write_vit(directory: Path) -> Path:
    """ViT: exact 32x32, bilinear, mean and std 0.5 (google/vit-base-patch16-224's settings)."""
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    _seed()
    model = ViTModel(ViTConfig(**_TRANSFORMER))
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=BILINEAR)
    return _save(directory, model, processor)


def write_deit(directory: Path) -> Path:
    """DeiT: exact 36x36 then a 32 crop, bicubic, ImageNet mean and std (DeiT's 256 -> 224)."""
    from transformers import DeiTConfig, DeiTImageProcessorPil, DeiTModel

    _seed()
    model = DeiTModel(DeiTConfig(**_TRANSFORMER), add_pooling_layer=False)
    processor = DeiTImageProcessorPil(
        size={"height": 36, "width": 36},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        resample=BICUBIC,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    return _save(directory, model, processor)


def write_beit(directory: Path) -> Path:
    """BEiT: exact 32x32, bicubic, no crop, mean and std 0.5; mean-pooled patch tokens."""
    from transformers import BeitConfig, BeitImageProcessorPil, BeitModel

    _seed()
    model = BeitModel(BeitConfig(**_TRANSFORMER, use_mean_pooling=True))
    processor = BeitImageProcessorPil(
        size={"height": 32, "width": 32}, resample=BICUBIC, do_center_crop=False
    )
    return _save(directory, model, processor)


def write_convnext(directory: Path) -> Path:
    """ConvNeXt: shortest_edge 32 with crop_pct 0.875 (short side 36, crop 32), bicubic."""
    from transformers import ConvNextConfig, ConvNextImageProcessorPil, ConvNextModel

    _seed()
    model = ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
    processor = ConvNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_pct=0.875, resample=BICUBIC
    )
    return _save(directory, model, processor)


def write_swin(directory: Path) -> Path:
    """Swin: exact 32x32 (ViT's processor, as Swin checkpoints use), bicubic, ImageNet."""
    from transformers import SwinConfig, SwinModel, ViTImageProcessorPil

    _seed()
    config = SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4
    )
    processor = ViTImageProcessorPil(
        size={"height": 32, "width": 32},
        resample=BICUBIC,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    return _save(directory, SwinModel(config), processor)


def write_dinov2(directory: Path) -> Path:
    """DINOv2: BiT's processor, shortest_edge 36 then a 32 crop, bicubic, ImageNet (as the
    conversion script writes 256 -> 224)."""
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    _seed()
    sizes = {key: value for key, value in _TRANSFORMER.items() if key != "intermediate_size"}
    config = Dinov2Config(**sizes, mlp_ratio=2)
    processor = BitImageProcessorPil(
        size={"shortest_edge": 36},
        crop_size={"height": 32, "width": 32},
        resample=BICUBIC,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    return _save(directory, Dinov2Model(config), processor)


def write_resnet(directory: Path) -> Path:
    """ResNet: ConvNeXt's processor, shortest_edge 32 with crop_pct 0.875, bilinear, ImageNet
    (microsoft/resnet-50's settings, bilinear for variety)."""
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    _seed()
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    processor = ConvNextImageProcessorPil(
        size={"shortest_edge": 32},
        crop_pct=0.875,
        resample=BILINEAR,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    return _save(directory, ResNetModel(config), processor)


def _clip_processor() -> Any:
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        resample=BICUBIC,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    )


def write_clip(directory: Path) -> Path:
    """A full CLIP checkpoint (both towers, projection 16): shortest_edge 32, crop 32,
    bicubic, OpenAI mean and std."""
    from transformers import CLIPConfig, CLIPModel

    _seed()
    config = CLIPConfig(text_config=_TEXT, vision_config=_TRANSFORMER, projection_dim=16)
    return _save(directory, CLIPModel(config), _clip_processor())


def write_clip_vision(directory: Path) -> Path:
    """A CLIPVisionModelWithProjection checkpoint (the vision tower alone, projection 16)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    _seed()
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**_TRANSFORMER, projection_dim=16))
    return _save(directory, model, _clip_processor())


def _siglip_processor() -> Any:
    from transformers import SiglipImageProcessorPil

    return SiglipImageProcessorPil(size={"height": 32, "width": 32}, resample=BICUBIC)


def write_siglip(directory: Path) -> Path:
    """A full SigLIP checkpoint (both towers): exact 32x32, bicubic, mean and std 0.5."""
    from transformers import SiglipConfig, SiglipModel

    _seed()
    config = SiglipConfig(text_config=_TEXT, vision_config=_TRANSFORMER)
    return _save(directory, SiglipModel(config), _siglip_processor())


def write_siglip_vision(directory: Path) -> Path:
    """A SiglipVisionModel checkpoint (the vision tower alone, attention-pooling head)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    _seed()
    model = SiglipVisionModel(SiglipVisionConfig(**_TRANSFORMER))
    return _save(directory, model, _siglip_processor())


# Family name -> writer; each writes the checkpoint into the directory it is given.
IMAGE_FAMILIES: dict[str, Callable[[Path], Path]] = {
    "vit": write_vit,
    "deit": write_deit,
    "beit": write_beit,
    "convnext": write_convnext,
    "swin": write_swin,
    "dinov2": write_dinov2,
    "resnet": write_resnet,
    "clip": write_clip,
    "clip_vision": write_clip_vision,
    "siglip": write_siglip,
    "siglip_vision": write_siglip_vision,
}
