"""Plain transformers text checkpoints (a BERT-like ``AutoModel`` and its tokenizer) as text
sources, with the pooling and normalisation the caller names (the checkpoint records none).

The reference is the checkpoint's own tokenizer and model in torch, pooled by a separate numpy
implementation of the same mode, so the served path (tokenizer.json through the service's
tokeniser, then the graph) is compared with code that shares nothing with it but the weights.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from models.encoders.encoder_sources import SourceError, TextReference, TextSource, inexpressible
from models.encoders.served_tokenizer import (
    PROBE_TEXTS,
    check_no_token_types,
    check_token_ids,
    load_fast_tokenizer,
    manifest_pad_id,
    serving_tokenizer_json,
    tokenizer_ids,
)
from models.encoders.text_pooling import ST_POOLING_MODES, st_pooling
from models.encoders.text_source_support import (
    L2Normalize,
    PooledTextEncoder,
    check_text_backbone,
    load_config,
    max_positions,
    quiet_offline_transformers,
    takes_token_types,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_MANIFEST_MAX_LENGTH = 8192
# transformers' stand-in for "no limit" in model_max_length is about 1e30.
_UNBOUNDED = 10**29


def numpy_pool(mode: str, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling ``mode`` of ``hidden`` [n, s, d] over ``attention_mask``
    [n, s], written in numpy (the reference's own implementation)."""
    rows = np.arange(hidden.shape[0])
    mask = attention_mask[..., None].astype(hidden.dtype)
    pooled: np.ndarray
    if mode == "cls":
        pooled = hidden[rows, attention_mask.argmax(axis=1)]
    elif mode == "lasttoken":
        last = hidden.shape[1] - 1 - attention_mask[:, ::-1].argmax(axis=1)
        pooled = hidden[rows, last] * mask.max(axis=1)
    elif mode == "max":
        pooled = np.where(mask > 0, hidden, -np.inf).max(axis=1)
    elif mode in ("mean", "mean_sqrt_len_tokens"):
        count = np.maximum(mask.sum(axis=1), 1e-9)
        summed = (hidden * mask).sum(axis=1)
        pooled = summed / (count if mode == "mean" else np.sqrt(count))
    elif mode == "weightedmean":
        # Positions count from each row's first real token (left padding), as in
        # sentence-transformers >= 6.3.
        first = np.argmax(attention_mask > 0, axis=1).astype(hidden.dtype)[:, None, None]
        positions = np.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None] - first
        weights = positions * mask
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    else:
        raise ValueError(f"unknown pooling mode {mode!r}")
    return pooled


def numpy_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (norms floored at 1e-12, as ``F.normalize``)."""
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    normalized: np.ndarray = embeddings / np.maximum(norms, 1e-12)
    return normalized


def plain_max_length(
    tokenizer: PreTrainedTokenizerBase, positions: int | None, requested: int | None
) -> int:
    """``requested`` (refused beyond the model's positions), else the tokenizer's
    ``model_max_length`` capped by the positions."""
    if requested is not None:
        if positions is not None and requested > positions:
            raise inexpressible("max_length", requested, f"the model has {positions} positions")
        length = requested
    else:
        length = int(min(tokenizer.model_max_length, positions or _UNBOUNDED))
        if length >= _UNBOUNDED:
            raise SourceError(
                "neither the tokenizer nor the model config gives a maximum length; pass "
                "--max-length",
                field="max_length",
            )
    if not 1 < length <= _MANIFEST_MAX_LENGTH:
        raise inexpressible("max_length", length, "the manifest's max_length is 2..8192")
    return length


def _reference(directory: Path, pooling: str, normalize: bool, max_length: int) -> TextReference:
    """AutoTokenizer + AutoModel in torch, pooled and normalised in numpy."""

    @functools.cache
    def loaded() -> tuple[Any, Any]:
        quiet_offline_transformers()
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()
        return tokenizer, model

    def encode(texts: Sequence[str]) -> np.ndarray:
        tokenizer, model = loaded()
        inputs = tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**inputs).last_hidden_state.double().numpy()
        pooled = numpy_pool(pooling, hidden, inputs["attention_mask"].numpy())
        return (numpy_normalize(pooled) if normalize else pooled).astype(np.float32)

    return encode


def load_hf_text_source(
    directory: Path, *, pooling: str, normalize: bool = False, max_length: int | None = None
) -> TextSource:
    """A plain transformers text checkpoint with an explicit ``pooling`` (one of
    sentence-transformers' modes), optional L2 normalisation, and ``max_length`` (default: the
    tokenizer's ``model_max_length`` capped by the model's positions)."""
    directory = Path(directory)
    if pooling not in ST_POOLING_MODES:
        raise SourceError(
            f"pooling {pooling!r} is not one of {ST_POOLING_MODES}", field="pooling", value=pooling
        )
    config = load_config(directory)
    check_text_backbone(config)
    from transformers import AutoModel

    tokenizer = load_fast_tokenizer(directory)
    length = plain_max_length(tokenizer, max_positions(config), max_length)
    tokenizer_json = serving_tokenizer_json(tokenizer)
    check_token_ids(
        lambda texts: tokenizer_ids(tokenizer, texts, max_length=length),
        tokenizer_json,
        max_length=length,
    )
    check_no_token_types(tokenizer, PROBE_TEXTS)
    backbone = AutoModel.from_pretrained(
        str(directory), local_files_only=True, attn_implementation="eager"
    ).eval()
    head: nn.Module = L2Normalize() if normalize else nn.Identity()
    module = PooledTextEncoder(
        backbone,
        st_pooling(pooling),
        head,
        token_type_ids=takes_token_types(tokenizer, backbone),
    ).eval()
    return TextSource(
        family="transformers",
        module=module,
        tokenizer_json=tokenizer_json,
        max_length=length,
        embedding_dim=int(config.hidden_size),
        reference=_reference(directory, pooling, normalize, length),
        reference_name=f"transformers AutoTokenizer + AutoModel, numpy {pooling} pooling"
        + (" + L2 normalisation" if normalize else ""),
        pad_token_id=manifest_pad_id(tokenizer, tokenizer_json, length),
    )
