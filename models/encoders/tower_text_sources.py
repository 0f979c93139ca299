"""The text towers of contrastive image-text checkpoints (CLIP, SigLIP) as text sources.

CLIP: the text transformer's states pooled at the end-of-text token, then the text projection
(``text_embeds``); texts padded to the longest with an attention mask, at most 77 tokens.
SigLIP: the states at the last position, which is padding for most texts, then the head
(``pooler_output``); every text padded to the model's length with the tokenizer's padding id
and no attention mask, as the model was trained. The references are the checkpoints' own
tokenizers and ``get_text_features`` (or the text model's output).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.encoders.encoder_sources import SourceError, TextReference, TextSource, inexpressible
from models.encoders.hf_text_source import numpy_normalize
from models.encoders.served_tokenizer import (
    check_token_ids,
    load_fast_tokenizer,
    manifest_pad_id,
    serving_tokenizer_json,
    tokenizer_ids,
)
from models.encoders.text_pooling import EotPooling, LastPositionPooling
from models.encoders.text_source_support import (
    L2Normalize,
    PooledTextEncoder,
    load_config,
    max_positions,
)

CLIP_MODEL_TYPES = ("clip", "clip_text_model")
SIGLIP_MODEL_TYPES = ("siglip", "siglip_text_model")


def _model_type(directory: Path) -> tuple[Any, str]:
    config = load_config(directory)
    return config, str(config.model_type)


def _pretrained_kwargs(attention: str | None) -> dict[str, Any]:
    """``from_pretrained``'s arguments: local files only, and the attention implementation
    when one is asked for (the export needs "eager"; the reference keeps the default)."""
    kwargs: dict[str, Any] = {"local_files_only": True}
    if attention is not None:
        kwargs["attn_implementation"] = attention
    return kwargs


def _reference_embeddings(embeds: torch.Tensor, normalize: bool) -> np.ndarray:
    """A reference's embeddings as float32, computed in float64 and L2-normalised when
    ``normalize``."""
    result = embeds.double().numpy()
    return (numpy_normalize(result) if normalize else result).astype(np.float32)


def _load_clip(directory: Path, model_type: str, attention: str | None) -> tuple[Any, Any, Any]:
    """(the whole model, its text model, its text projection)."""
    from transformers import CLIPModel, CLIPTextModelWithProjection

    kwargs = _pretrained_kwargs(attention)
    model: Any
    if model_type == "clip":
        model = CLIPModel.from_pretrained(str(directory), **kwargs)
    else:
        model = CLIPTextModelWithProjection.from_pretrained(str(directory), **kwargs)
    model.eval()
    return model, model.text_model, model.text_projection


def _with_normalize(head: nn.Module, normalize: bool) -> nn.Sequential:
    return nn.Sequential(head, L2Normalize()) if normalize else nn.Sequential(head)


def _clip_reference(
    directory: Path, model_type: str, normalize: bool, length: int
) -> TextReference:
    """CLIP's tokenizer (``padding=True``) and ``get_text_features`` / ``text_embeds``."""

    @functools.cache
    def loaded() -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        return tokenizer, _load_clip(directory, model_type, None)[0]

    def encode(texts: Sequence[str]) -> np.ndarray:
        tokenizer, model = loaded()
        inputs = tokenizer(
            list(texts), padding=True, truncation=True, max_length=length, return_tensors="pt"
        )
        with torch.inference_mode():
            if model_type == "clip":
                embeds = model.get_text_features(**inputs).pooler_output
            else:
                embeds = model(**inputs).text_embeds
        return _reference_embeddings(embeds, normalize)

    return encode


def load_clip_text_source(directory: Path, *, normalize: bool = False) -> TextSource:
    """A CLIP checkpoint's text tower (a whole ``CLIPModel`` or a
    ``CLIPTextModelWithProjection``): ``text_embeds``, L2-normalised when ``normalize``."""
    directory = Path(directory)
    config, model_type = _model_type(directory)
    if model_type not in CLIP_MODEL_TYPES:
        raise SourceError(
            f"{directory} is not a CLIP checkpoint", field="model_type", value=model_type
        )
    text_config = config.text_config if model_type == "clip" else config
    if model_type == "clip_text_model" and "CLIPTextModelWithProjection" not in (
        config.architectures or []
    ):
        raise inexpressible(
            "architectures",
            config.architectures,
            "a CLIP text model without its projection has no text_embeds",
        )
    tokenizer = load_fast_tokenizer(directory)
    positions = max_positions(text_config) or tokenizer.model_max_length
    length = int(min(tokenizer.model_max_length, positions))
    tokenizer_json = serving_tokenizer_json(tokenizer)
    check_token_ids(
        lambda texts: tokenizer_ids(tokenizer, texts, max_length=length),
        tokenizer_json,
        max_length=length,
    )
    _, text_model, projection = _load_clip(directory, model_type, "eager")
    module = PooledTextEncoder(
        text_model,
        EotPooling(int(text_config.eos_token_id)),
        _with_normalize(projection, normalize),
    ).eval()
    return TextSource(
        family="clip",
        module=module,
        tokenizer_json=tokenizer_json,
        max_length=length,
        embedding_dim=int(projection.out_features),
        reference=_clip_reference(directory, model_type, normalize, length),
        reference_name="transformers CLIP tokenizer (padding=True) + "
        + ("CLIPModel.get_text_features" if model_type == "clip" else "text_embeds")
        + (" + L2 normalisation" if normalize else ""),
        pad_token_id=manifest_pad_id(tokenizer, tokenizer_json, length),
    )


def _load_siglip(directory: Path, model_type: str, attention: str | None) -> tuple[Any, Any]:
    """(the whole model, its text model)."""
    from transformers import SiglipModel, SiglipTextModel

    kwargs = _pretrained_kwargs(attention)
    model: Any
    if model_type == "siglip":
        model = SiglipModel.from_pretrained(str(directory), **kwargs)
        model.eval()
        return model, model.text_model
    model = SiglipTextModel.from_pretrained(str(directory), **kwargs)
    model.eval()
    return model, model


def _siglip_reference(
    directory: Path, model_type: str, normalize: bool, length: int
) -> TextReference:
    """SigLIP's tokenizer (``padding="max_length"``) and ``get_text_features`` on the ids
    alone (the model was trained without an attention mask)."""

    @functools.cache
    def loaded() -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        return tokenizer, _load_siglip(directory, model_type, None)[0]

    def encode(texts: Sequence[str]) -> np.ndarray:
        tokenizer, model = loaded()
        inputs = tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            if model_type == "siglip":
                embeds = model.get_text_features(input_ids=inputs["input_ids"]).pooler_output
            else:
                embeds = model(input_ids=inputs["input_ids"]).pooler_output
        return _reference_embeddings(embeds, normalize)

    return encode


def load_siglip_text_source(directory: Path, *, normalize: bool = False) -> TextSource:
    """A SigLIP checkpoint's text tower (a whole ``SiglipModel`` or a ``SiglipTextModel``):
    ``pooler_output``, L2-normalised when ``normalize``. Texts are always padded to the
    model's length (64 for SigLIP) with the tokenizer's padding id: the pooled position is the
    last one, so dynamic padding would change every embedding."""
    directory = Path(directory)
    config, model_type = _model_type(directory)
    if model_type not in SIGLIP_MODEL_TYPES:
        raise SourceError(
            f"{directory} is not a SigLIP checkpoint", field="model_type", value=model_type
        )
    text_config = config.text_config if model_type == "siglip" else config
    length = max_positions(text_config)
    if length is None:
        raise SourceError("the SigLIP text config has no max_position_embeddings", field="config")
    tokenizer = load_fast_tokenizer(directory)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise inexpressible(
            "pad_token", None, "SigLIP pads every text to its length, and no padding token is set"
        )
    tokenizer_json = serving_tokenizer_json(tokenizer)
    check_token_ids(
        lambda texts: tokenizer_ids(tokenizer, texts, max_length=length, pad_to_max_length=True),
        tokenizer_json,
        max_length=length,
        padding="max_length",
        pad_token_id=int(pad_id),
    )
    _, text_model = _load_siglip(directory, model_type, "eager")
    module = PooledTextEncoder(
        text_model,
        LastPositionPooling(),
        _with_normalize(text_model.head, normalize),
        takes_attention_mask=False,
    ).eval()
    return TextSource(
        family="siglip",
        module=module,
        tokenizer_json=tokenizer_json,
        max_length=length,
        embedding_dim=int(text_model.head.out_features),
        reference=_siglip_reference(directory, model_type, normalize, length),
        reference_name="transformers SigLIP tokenizer (padding='max_length') + "
        + ("SiglipModel.get_text_features" if model_type == "siglip" else "pooler_output")
        + " on input_ids alone"
        + (" + L2 normalisation" if normalize else ""),
        takes_attention_mask=False,
        padding="max_length",
        pad_token_id=int(pad_id),
    )
