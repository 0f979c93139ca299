"""``load_text_source`` picks the loader from what the directory holds, and every loader refuses
what the manifest cannot express, naming the field and its value."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tokenizers import processors
from torch import nn
from transformers import PreTrainedTokenizerFast

from models.encoders.encoder_sources import SourceError
from models.encoders.hf_text_source import load_hf_text_source
from models.encoders.served_tokenizer import (
    check_no_token_types,
    check_token_ids,
    serving_tokenizer_json,
)
from models.encoders.st_text_source import load_sentence_transformers_source
from models.encoders.text_sources import load_text_source
from tests.support.tiny_text_checkpoints import (
    bert_tokenizer,
    bert_vocab,
    write_tiny_bert,
    write_tiny_clip,
    write_tiny_sentence_transformer,
    write_tiny_siglip,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "st": write_tiny_sentence_transformer(
            root / "st",
            dense=[(16, nn.Tanh())],
            normalize=True,
            prompts={"query": "query: "},
        ),
        "bert": write_tiny_bert(root / "bert"),
        "clip": write_tiny_clip(root / "clip"),
        "siglip": write_tiny_siglip(root / "siglip"),
    }


def _copy(checkpoints: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoints[name], tmp_path / name))


def _edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _refused(field: str, value: object, call: Callable[[], object]) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call()
    assert (caught.value.field, caught.value.value) == (field, value), str(caught.value)
    return caught.value


def test_dispatch_on_what_the_directory_holds(checkpoints: dict[str, Path]) -> None:
    assert load_text_source(checkpoints["st"]).family == "sentence-transformers"
    assert load_text_source(checkpoints["st"], prompt_name="query").prompt == "query: "
    assert load_text_source(checkpoints["clip"]).family == "clip"
    assert load_text_source(checkpoints["clip"], max_length=77).max_length == 77
    assert load_text_source(checkpoints["siglip"], normalize=True).family == "siglip"
    plain = load_text_source(checkpoints["bert"], pooling="cls", normalize=True, max_length=16)
    assert (plain.family, plain.max_length) == ("transformers", 16)


def test_a_plain_model_needs_pooling(checkpoints: dict[str, Path]) -> None:
    error = _refused("pooling", None, lambda: load_text_source(checkpoints["bert"]))
    assert "--pooling" in str(error)


@pytest.mark.parametrize(
    ("name", "options", "field", "value"),
    [
        ("st", {"pooling": "mean"}, "pooling", "mean"),
        ("st", {"max_length": 16}, "max_length", 16),
        ("st", {"normalize": True}, "normalize", True),
        ("clip", {"pooling": "mean"}, "pooling", "mean"),
        ("clip", {"prompt_name": "query"}, "prompt_name", "query"),
        ("siglip", {"prompt_name": "query"}, "prompt_name", "query"),
        ("bert", {"pooling": "mean", "prompt_name": "query"}, "prompt_name", "query"),
        ("bert", {"pooling": "median"}, "pooling", "median"),
        ("bert", {"pooling": "mean", "max_length": 100}, "max_length", 100),
        ("siglip", {"max_length": 32}, "max_length", 32),
        ("clip", {"max_length": 64}, "max_length", 64),
    ],
)
def test_options_that_do_not_apply_are_refused(
    checkpoints: dict[str, Path], name: str, options: dict[str, Any], field: str, value: object
) -> None:
    _refused(field, value, lambda: load_text_source(checkpoints[name], **options))


def test_a_multimodal_checkpoint_is_not_a_plain_text_model(checkpoints: dict[str, Path]) -> None:
    _refused("model_type", "clip", lambda: load_hf_text_source(checkpoints["clip"], pooling="mean"))


def test_an_encoder_decoder_is_not_a_text_encoder(tmp_path: Path) -> None:
    from transformers import T5Config

    T5Config(d_model=8, d_ff=16, num_layers=1, num_heads=2).save_pretrained(str(tmp_path))
    _refused("model_type", "t5", lambda: load_text_source(tmp_path, pooling="mean"))


def test_missing_directory_and_modules(tmp_path: Path) -> None:
    _refused("directory", None, lambda: load_text_source(tmp_path / "nowhere"))
    _refused("config.json", None, lambda: load_text_source(tmp_path))


ST_EDITS: dict[str, tuple[str, Callable[[Any], Any], str, object]] = {
    "unknown module": (
        "modules.json",
        lambda rows: [
            *rows,
            {"idx": 4, "name": "4", "path": "", "type": "sentence_transformers.models.LayerNorm"},
        ],
        "modules.json[4].type",
        "sentence_transformers.models.LayerNorm",
    ),
    "normalize before pooling": (
        "modules.json",
        lambda rows: [rows[0], rows[3], rows[1], rows[2]],
        "modules.json",
        ["Transformer", "Normalize", "Pooling", "Dense"],
    ),
    "unknown pooling mode": (
        "1_Pooling/config.json",
        lambda config: {**config, "pooling_mode": "median"},
        "1_Pooling.pooling_mode",
        "median",
    ),
    "pooling width": (
        "1_Pooling/config.json",
        lambda config: {**config, "embedding_dimension": 48},
        "1_Pooling.embedding_dimension",
        48,
    ),
    "non-torch activation": (
        "2_Dense/config.json",
        lambda config: {**config, "activation_function": "my_package.Swish"},
        "2_Dense.activation_function",
        "my_package.Swish",
    ),
    "dense reads token states": (
        "2_Dense/config.json",
        lambda config: {**config, "module_input_name": "token_embeddings"},
        "2_Dense.module_input_name",
        "token_embeddings",
    ),
    "max_seq_length beyond the positions": (
        "sentence_bert_config.json",
        lambda config: {**config, "max_seq_length": 128},
        "sentence_bert_config.max_seq_length",
        128,
    ),
    "another task": (
        "sentence_bert_config.json",
        lambda config: {**config, "transformer_task": "fill-mask"},
        "sentence_bert_config.transformer_task",
        "fill-mask",
    ),
    "per-call processing options": (
        "sentence_bert_config.json",
        lambda config: {**config, "processing_kwargs": {"text": {"max_length": 8}}},
        "sentence_bert_config.processing_kwargs",
        {"text": {"max_length": 8}},
    ),
    "model options": (
        "sentence_bert_config.json",
        lambda config: {**config, "model_kwargs": {"torch_dtype": "float16"}},
        "sentence_bert_config.model_kwargs",
        {"torch_dtype": "float16"},
    ),
    "a sparse encoder": (
        "config_sentence_transformers.json",
        lambda config: {**config, "model_type": "SparseEncoder"},
        "config_sentence_transformers.model_type",
        "SparseEncoder",
    ),
    "a default prompt": (
        "config_sentence_transformers.json",
        lambda config: {**config, "default_prompt_name": "query"},
        "config_sentence_transformers.default_prompt_name",
        "query",
    ),
}


@pytest.mark.parametrize("case", list(ST_EDITS))
def test_sentence_transformers_refusals(
    checkpoints: dict[str, Path], tmp_path: Path, case: str
) -> None:
    file, change, field, value = ST_EDITS[case]
    directory = _copy(checkpoints, "st", tmp_path)
    _edit_json(directory / file, change)
    _refused(field, value, lambda: load_sentence_transformers_source(directory))


def test_include_prompt_false_is_refused_with_a_prompt(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    directory = _copy(checkpoints, "st", tmp_path)
    _edit_json(directory / "1_Pooling/config.json", lambda c: {**c, "include_prompt": False})
    assert load_sentence_transformers_source(directory).prompt == ""
    _refused(
        "1_Pooling.include_prompt",
        False,
        lambda: load_sentence_transformers_source(directory, prompt_name="query"),
    )


def test_an_unknown_prompt_name_is_refused(checkpoints: dict[str, Path]) -> None:
    _refused(
        "prompt_name",
        "passage",
        lambda: load_sentence_transformers_source(checkpoints["st"], prompt_name="passage"),
    )


def test_a_tokenizer_that_cannot_load_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """SigLIP's own sentencepiece tokenizer (Python-side text canonicalisation, no
    tokenizer.json) cannot be served; here it cannot even load (no sentencepiece)."""
    directory = _copy(checkpoints, "siglip", tmp_path)
    _edit_json(
        directory / "tokenizer_config.json", lambda c: {**c, "tokenizer_class": "SiglipTokenizer"}
    )
    _refused("tokenizer", None, lambda: load_text_source(directory))


def test_differing_token_ids_are_refused(checkpoints: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoints["bert"]), local_files_only=True)
    tokenizer_json = serving_tokenizer_json(tokenizer)

    def python_side_lowercasing(texts: Any) -> list[list[int]]:
        encoded = tokenizer([t.lower() for t in texts], truncation=True, max_length=16)
        return [list(ids) for ids in encoded["input_ids"]]

    error = _refused(
        "tokenizer",
        "tokenizer.json",
        lambda: check_token_ids(python_side_lowercasing, tokenizer_json, max_length=16),
    )
    assert "Slim-Fit" in str(error)


def test_non_zero_token_types_are_refused() -> None:
    backend = bert_tokenizer()
    vocab = bert_vocab()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    assert tokenizer("a red shoe")["token_type_ids"] == [0, 1, 1, 1, 1]
    _refused("token_type_ids", "non-zero", lambda: check_no_token_types(tokenizer, ["a red shoe"]))
