"""sentence-transformers directories as text sources.

The graph is the Transformer's ``AutoModel`` with our pooling, the Dense layers' saved weights
and normalisation, read from the directory's own files (``modules.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``, each module's folder);
the reference is ``SentenceTransformer(directory).encode``. What the manifest cannot express is
refused, naming the file's field: other module types, ``include_prompt=False`` with a prompt, a
default prompt nobody chose, a length beyond the model's positions, per-call processing options.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from models.encoders.encoder_sources import SourceError, TextReference, TextSource, inexpressible
from models.encoders.served_tokenizer import (
    PROBE_TEXTS,
    check_no_token_types,
    check_token_ids,
    has_lowercase,
    load_fast_tokenizer,
    manifest_pad_id,
    prepend_lowercase,
    serving_tokenizer_json,
    tokenizer_ids,
)
from models.encoders.st_modules import (
    ModuleEntry,
    load_dense,
    load_normalize,
    load_pooling,
    read_modules,
)
from models.encoders.text_source_support import (
    PooledTextEncoder,
    check_text_backbone,
    load_config,
    max_positions,
    quiet_offline_transformers,
    read_json,
    takes_token_types,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The Transformer module's config file, under the names sentence-transformers tries in turn.
_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
_TEXT_FORWARD = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
# Options that change the model itself or how each call is processed: refused when set.
_REFUSED_WHEN_SET = (
    "model_args",
    "model_kwargs",
    "config_args",
    "config_kwargs",
    "processing_kwargs",
    "query_length",
    "document_length",
    "query_expansion",
)
_MAX_PROMPT_CHARS = 1024  # the manifest's limit
_MANIFEST_MAX_LENGTH = 8192


def _transformer_config(folder: Path) -> tuple[str, dict[str, Any]]:
    """The Transformer module's config (file stem, contents), its settings checked."""
    name = next(
        (n for n in _TRANSFORMER_CONFIGS if (folder / n).is_file()), _TRANSFORMER_CONFIGS[0]
    )
    stem = name.removesuffix(".json")
    config = read_json(folder / name, required=False)
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise inexpressible(f"{stem}.transformer_task", task, "only feature extraction is exported")
    modality = config.get("modality_config")
    if modality is not None and modality != _TEXT_FORWARD:
        raise inexpressible(
            f"{stem}.modality_config", modality, "only the plain text forward pass is exported"
        )
    output = config.get("module_output_name", "token_embeddings")
    if output != "token_embeddings":
        raise inexpressible(f"{stem}.module_output_name", output, "pooling reads token states")
    for key in _REFUSED_WHEN_SET:
        value = config.get(key)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "trust_remote_code"}  # ST drops it
        if value:
            raise inexpressible(f"{stem}.{key}", value, "not reproduced by the exported graph")
    return stem, config


def _prompt(directory: Path, prompt_name: str | None) -> str:
    """The prompt the service prepends: the one named, or none; a default prompt is refused
    unless a prompt name is passed (which prompt a deployment wants is a choice)."""
    config = read_json(directory / "config_sentence_transformers.json", required=False)
    model_type = config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise inexpressible(
            "config_sentence_transformers.model_type", model_type, "only dense text encoders"
        )
    prompts: dict[str, str] = config.get("prompts") or {}
    default = config.get("default_prompt_name")
    if prompt_name is None:
        if default is not None and prompts.get(default):
            raise inexpressible(
                "config_sentence_transformers.default_prompt_name",
                default,
                "the model prepends a default prompt; choose it (or another) explicitly with "
                f"--prompt-name (prompts: {sorted(prompts)})",
            )
        return ""
    if prompt_name not in prompts:
        raise SourceError(
            f"prompt {prompt_name!r} is not among the model's prompts {sorted(prompts)}",
            field="prompt_name",
            value=prompt_name,
        )
    prompt = prompts[prompt_name]
    if len(prompt) > _MAX_PROMPT_CHARS:
        raise inexpressible(f"prompts.{prompt_name}", prompt[:40], "longer than 1024 characters")
    return prompt


def _max_length(
    stem: str, config: dict[str, Any], tokenizer: PreTrainedTokenizerBase, positions: int | None
) -> int:
    """The length sentence-transformers truncates to: ``max_seq_length`` when set (it is then
    not capped), else the tokenizer's ``model_max_length`` capped by the model's positions."""
    processor_kwargs = config.get("processor_kwargs") or config.get("tokenizer_args") or {}
    if "model_max_length" in processor_kwargs:
        field, length = f"{stem}.processor_kwargs.model_max_length", tokenizer.model_max_length
    elif config.get("max_seq_length") is not None:
        field, length = f"{stem}.max_seq_length", int(config["max_seq_length"])
    else:
        field, length = "tokenizer_config.model_max_length", tokenizer.model_max_length
        if positions is not None:
            length = min(length, positions)
    if positions is not None and length > positions:
        raise inexpressible(field, length, f"the model has only {positions} positions")
    if not 1 < length <= _MANIFEST_MAX_LENGTH:
        raise inexpressible(field, length, "the manifest's max_length is 2..8192")
    return int(length)


def _head(entries: Sequence[ModuleEntry], width: int) -> tuple[nn.Sequential, int]:
    """The Dense and Normalize modules after pooling, in order, and the output width."""
    steps: list[nn.Module] = []
    for entry in entries:
        if entry.kind == "Dense":
            dense = load_dense(entry, width)
            steps.append(dense)
            width = dense.linear.out_features
        else:
            steps.append(load_normalize(entry))
    return nn.Sequential(*steps), width


def _reference(directory: Path, prompt_name: str | None) -> TextReference:
    """``SentenceTransformer(directory).encode`` (loaded on first use)."""

    @functools.cache
    def model() -> Any:
        quiet_offline_transformers()
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(directory), device="cpu", local_files_only=True)

    def encode(texts: Sequence[str]) -> np.ndarray:
        embeddings = model().encode(list(texts), convert_to_numpy=True, prompt_name=prompt_name)
        return np.asarray(embeddings, dtype=np.float32)

    return encode


def load_sentence_transformers_source(
    directory: Path, *, prompt_name: str | None = None
) -> TextSource:
    """A sentence-transformers directory as a text source (see the module docstring)."""
    directory = Path(directory)
    entries = read_modules(directory)
    folder = entries[0].path
    stem, st_config = _transformer_config(folder)
    prompt = _prompt(directory, prompt_name)
    config = load_config(folder)
    check_text_backbone(config)
    from tokenizers import Tokenizer
    from transformers import AutoModel

    pooling, width = load_pooling(entries[1], int(config.hidden_size), prompt)
    head, embedding_dim = _head(entries[2:], width)
    processor_kwargs = dict(
        st_config.get("processor_kwargs") or st_config.get("tokenizer_args") or {}
    )
    processor_kwargs.pop("trust_remote_code", None)
    if st_config.get("max_seq_length") is not None:
        processor_kwargs.setdefault("model_max_length", st_config["max_seq_length"])
    tokenizer = load_fast_tokenizer(folder, **processor_kwargs)
    max_length = _max_length(stem, st_config, tokenizer, max_positions(config))
    tokenizer_json = serving_tokenizer_json(tokenizer)
    if st_config.get("do_lower_case") and not has_lowercase(tokenizer_json):
        # As sentence-transformers does to its own tokenizer: Lowercase first.
        tokenizer_json = prepend_lowercase(tokenizer_json)
        backend = tokenizer.backend_tokenizer
        backend.normalizer = Tokenizer.from_str(tokenizer_json).normalizer
    check_token_ids(
        lambda texts: tokenizer_ids(tokenizer, texts, max_length=max_length, prompt=prompt),
        tokenizer_json,
        max_length=max_length,
        prompt=prompt,
    )
    check_no_token_types(tokenizer, PROBE_TEXTS)
    backbone = AutoModel.from_pretrained(
        str(folder), local_files_only=True, attn_implementation="eager"
    ).eval()
    token_types = takes_token_types(tokenizer, backbone)
    module = PooledTextEncoder(backbone, pooling, head, token_type_ids=token_types).eval()
    version = _st_version()
    return TextSource(
        family="sentence-transformers",
        module=module,
        tokenizer_json=tokenizer_json,
        max_length=max_length,
        embedding_dim=embedding_dim,
        reference=_reference(directory, prompt_name),
        reference_name=f"sentence-transformers {version} SentenceTransformer.encode"
        + (f" (prompt_name={prompt_name!r})" if prompt_name else ""),
        pad_token_id=manifest_pad_id(tokenizer, tokenizer_json, max_length),
        prompt=prompt,
    )


def _st_version() -> str:
    from importlib.metadata import version

    return version("sentence-transformers")
