"""What the text source loaders share besides tokenisation (``served_tokenizer``): reading
checkpoint files, the torch module that wraps a backbone with its pooling and head, and the
refusal of loader options that do not apply.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from models.encoders.encoder_sources import SourceError, inexpressible
from models.encoders.text_pooling import TextPooling

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` for a missing optional file."""
    if not path.is_file():
        if required:
            raise SourceError(f"{path} does not exist", field=path.name)
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SourceError(f"{path} is not readable JSON: {error}", field=path.name) from error
    if not isinstance(value, dict):
        raise SourceError(f"{path} does not hold a JSON object", field=path.name)
    return value


def quiet_offline_transformers() -> None:
    """Local files only (``HF_HUB_OFFLINE``) and no progress bars or info logs from
    transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def takes_token_types(tokenizer: PreTrainedTokenizerBase, backbone: nn.Module) -> bool:
    """Whether the source feeds token types (its tokenizer gives them and the model reads
    them); the graph then feeds zeros."""
    return "token_type_ids" in tokenizer.model_input_names and (
        "token_type_ids" in inspect.signature(backbone.forward).parameters
    )


def load_config(directory: Path) -> Any:
    """The checkpoint's transformers config (``AutoConfig``), local files only."""
    quiet_offline_transformers()
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as error:
        raise SourceError(
            f"{directory}: no readable config.json: {error}", field="config.json"
        ) from error


def check_text_backbone(config: Any) -> None:
    """Refuse configs whose ``AutoModel`` is not a text encoder giving token states: a
    multimodal model (its text tower has its own loader) or an encoder-decoder."""
    if hasattr(config, "vision_config"):
        raise inexpressible(
            "model_type",
            config.model_type,
            "a multimodal checkpoint's text tower is exported by its own loader (CLIP and "
            "SigLIP are supported)",
        )
    if getattr(config, "is_encoder_decoder", False):
        raise inexpressible(
            "model_type",
            config.model_type,
            "an encoder-decoder model's AutoModel needs decoder inputs; only text encoders "
            "are exported",
        )


def max_positions(config: Any) -> int | None:
    """The model's position limit (``max_position_embeddings``), if it has one."""
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


class L2Normalize(nn.Module):
    """Scale each embedding to unit L2 norm (``F.normalize(p=2, dim=-1)``, eps 1e-12)."""

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(embeddings, p=2.0, dim=-1)


class PooledTextEncoder(nn.Module):
    """A text backbone's last hidden states, pooled, then ``head`` (projections, Dense layers,
    normalisation, in order): ``input_ids`` [n, s] (and ``attention_mask`` [n, s], when
    ``takes_attention_mask``) to embeddings [n, d].

    With ``token_type_ids``, the backbone is also given all-zero token types, built inside the
    graph (single texts have no second segment), so they are no graph input.
    """

    def __init__(
        self,
        backbone: nn.Module,
        pooling: TextPooling,
        head: nn.Module,
        *,
        takes_attention_mask: bool = True,
        token_type_ids: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = head
        self.takes_attention_mask = takes_attention_mask
        self.token_type_ids = token_type_ids

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids}
        if self.takes_attention_mask:
            if attention_mask is None:
                raise ValueError("this encoder takes an attention_mask")
            inputs["attention_mask"] = attention_mask
        else:
            attention_mask = torch.ones_like(input_ids)
        if self.token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(input_ids)
        hidden = self.backbone(**inputs).last_hidden_state
        result: torch.Tensor = self.head(self.pooling(hidden, attention_mask, input_ids))
        return result


def reject_options(kind: str, **options: object) -> None:
    """Refuse loader options that do not apply to ``kind`` (those not None)."""
    for name, value in options.items():
        if value is not None:
            raise SourceError(
                f"--{name.replace('_', '-')} does not apply to a {kind} checkpoint: its own "
                "configuration defines it",
                field=name,
                value=value,
            )
