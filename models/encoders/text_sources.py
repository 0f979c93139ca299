"""Text sources from local checkpoints, whatever the directory holds.

A directory with ``modules.json`` is a sentence-transformers model; a ``config.json`` whose
``model_type`` is CLIP's or SigLIP's is a contrastive text tower; anything else is a plain
transformers text model, whose pooling the caller must name (``--pooling``). The loaders live in
``st_text_source``, ``hf_text_source`` and ``tower_text_sources``; they are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from models.encoders.encoder_sources import SourceError, TextSource, inexpressible
from models.encoders.hf_text_source import load_hf_text_source
from models.encoders.st_text_source import load_sentence_transformers_source
from models.encoders.text_pooling import ST_POOLING_MODES
from models.encoders.text_source_support import read_json, reject_options
from models.encoders.tower_text_sources import (
    CLIP_MODEL_TYPES,
    SIGLIP_MODEL_TYPES,
    load_clip_text_source,
    load_siglip_text_source,
)

__all__ = [
    "load_clip_text_source",
    "load_hf_text_source",
    "load_sentence_transformers_source",
    "load_siglip_text_source",
    "load_text_source",
]


def _check_tower_length(source: TextSource, max_length: int | None) -> TextSource:
    """A tower's length is the model's: a different ``--max-length`` is refused."""
    if max_length is not None and max_length != source.max_length:
        raise inexpressible(
            "max_length",
            max_length,
            f"the {source.family} text tower takes texts of up to {source.max_length} tokens"
            + (", always padded to that length" if source.padding == "max_length" else ""),
        )
    return source


def load_text_source(
    directory: Path,
    *,
    pooling: str | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
    prompt_name: str | None = None,
) -> TextSource:
    """The text source a checkpoint directory holds (see the module docstring). Options that
    the checkpoint itself defines are refused rather than silently overridden."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory} is not a directory", field="directory")
    if (directory / "modules.json").is_file():
        reject_options(
            "sentence-transformers", pooling=pooling, normalize=normalize, max_length=max_length
        )
        return load_sentence_transformers_source(directory, prompt_name=prompt_name)
    model_type = read_json(directory / "config.json").get("model_type")
    if model_type in CLIP_MODEL_TYPES:
        reject_options("CLIP", pooling=pooling, prompt_name=prompt_name)
        source = load_clip_text_source(directory, normalize=bool(normalize))
        return _check_tower_length(source, max_length)
    if model_type in SIGLIP_MODEL_TYPES:
        reject_options("SigLIP", pooling=pooling, prompt_name=prompt_name)
        source = load_siglip_text_source(directory, normalize=bool(normalize))
        return _check_tower_length(source, max_length)
    reject_options("plain transformers", prompt_name=prompt_name)
    if pooling is None:
        raise SourceError(
            f"{directory} is a plain transformers model ({model_type}), which records no "
            f"pooling: pass --pooling (one of {', '.join(ST_POOLING_MODES)}) and, if its "
            "embeddings are compared by cosine, --normalize",
            field="pooling",
        )
    return load_hf_text_source(
        directory, pooling=pooling, normalize=bool(normalize), max_length=max_length
    )
