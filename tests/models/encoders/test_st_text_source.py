"""sentence-transformers directories as text sources: for every pooling mode, with and without
Dense layers, Normalize and do_lower_case, the service's tokenisation of the source's
tokenizer.json gives the ids sentence-transformers gives, the module on those ids matches
``SentenceTransformer.encode``, and its ONNX export matches torch at batch 1, 2 and 7."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torch import nn

from models.encoders.st_text_source import load_sentence_transformers_source
from models.encoders.text_pooling import ST_POOLING_MODES
from tests.models.encoders.text_source_checks import (
    TEXTS,
    module_against_reference,
    onnx_against_torch,
    served_ids,
    service_tokenizer,
    st_ids,
)
from tests.support.tiny_text_checkpoints import write_tiny_sentence_transformer

MAX_SEQ_LENGTH = 24

CONFIGS: dict[str, dict[str, Any]] = {
    **{mode: {"pooling": mode} for mode in ST_POOLING_MODES},
    **{
        f"{mode}+dense+normalize+lower": {
            "pooling": mode,
            "dense": [(24, nn.Tanh())],
            "normalize": True,
            "do_lower_case": True,
            "legacy_config": True,
        }
        for mode in ST_POOLING_MODES
    },
    "two-dense-gelu-identity": {
        "pooling": "mean",
        "dense": [(24, nn.GELU()), (16, nn.Identity())],
        "normalize": True,
    },
    "dense-residual-without-bias": {
        "pooling": "mean",
        "dense": [(24, nn.Tanh()), (24, nn.GELU())],
        "dense_bias": False,
        "dense_residual": True,
    },
    "lower-baked-by-sentence-transformers-6": {"pooling": "cls", "do_lower_case": True},
    "three-modes": {"pooling": ("lasttoken", "mean", "max"), "dense": [(20, nn.ReLU())]},
}


def _check_source(directory: Path, folder: Path, prompt_name: str | None = None) -> float:
    source = load_sentence_transformers_source(directory, prompt_name=prompt_name)
    tokenizer = service_tokenizer(source, folder)
    assert served_ids(tokenizer, TEXTS) == st_ids(directory, source.prompt)
    cosine = module_against_reference(source, tokenizer)
    onnx_against_torch(source, tokenizer, folder)
    return cosine


@pytest.mark.parametrize("name", list(CONFIGS))
def test_served_path_reproduces_sentence_transformers(name: str, tmp_path: Path) -> None:
    directory = write_tiny_sentence_transformer(
        tmp_path / "st", max_seq_length=MAX_SEQ_LENGTH, **CONFIGS[name]
    )
    source = load_sentence_transformers_source(directory)
    assert source.family == "sentence-transformers"
    assert source.max_length == MAX_SEQ_LENGTH
    assert (source.padding, source.takes_attention_mask, source.prompt) == ("longest", True, "")
    dense = CONFIGS[name].get("dense")
    modes = CONFIGS[name]["pooling"]
    width = 32 * (1 if isinstance(modes, str) else len(modes))
    assert source.embedding_dim == (dense[-1][0] if dense else width)
    _check_source(directory, tmp_path)
