"""CLIP and SigLIP text towers as text sources: the service's tokenisation gives the ids the
checkpoint's tokenizer gives (CLIP padded to the longest, SigLIP to its fixed length with its
padding id), the module matches ``get_text_features``, and the ONNX export matches torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from models.encoders.tower_text_sources import load_clip_text_source, load_siglip_text_source
from tests.models.encoders.text_source_checks import (
    MIN_COSINE,
    TEXTS,
    module_against_reference,
    onnx_against_torch,
    row_cosines,
    run_module,
    served_feeds,
    served_ids,
    service_tokenizer,
    unpadded,
)
from tests.support.tiny_text_checkpoints import write_tiny_clip, write_tiny_siglip

CLIP_CASES = {
    "clip-model-legacy-eos": {"full": True, "legacy_eos": True},
    "clip-model-eos-id": {"full": True, "legacy_eos": False},
    "text-with-projection-legacy-eos": {"full": False, "legacy_eos": True},
    "text-with-projection-eos-id": {"full": False, "legacy_eos": False},
}


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("case", list(CLIP_CASES))
def test_clip_served_path_reproduces_the_checkpoint(
    tmp_path: Path, case: str, normalize: bool
) -> None:
    directory = write_tiny_clip(tmp_path / "clip", **CLIP_CASES[case])
    source = load_clip_text_source(directory, normalize=normalize)
    hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    assert (source.family, source.max_length, source.embedding_dim) == ("clip", 77, 16)
    assert (source.padding, source.takes_attention_mask) == ("longest", True)
    assert source.pad_token_id == hf.pad_token_id == hf.convert_tokens_to_ids("<|endoftext|>")
    tokenizer = service_tokenizer(source, tmp_path)
    encoded = hf(list(TEXTS), padding=True, truncation=True, max_length=77)
    assert served_ids(tokenizer, TEXTS) == unpadded(encoded["input_ids"], encoded["attention_mask"])
    module_against_reference(source, tokenizer)
    onnx_against_torch(source, tokenizer, tmp_path)


def test_clip_tokenizer_json_lowercases_and_collapses_whitespace(tmp_path: Path) -> None:
    source = load_clip_text_source(write_tiny_clip(tmp_path / "clip"))
    tokenizer = service_tokenizer(source, tmp_path)
    assert served_ids(tokenizer, ["A  Red\tSHOE"]) == served_ids(tokenizer, ["a red shoe"])


def test_clip_truncation_keeps_the_end_of_text_token(tmp_path: Path) -> None:
    source = load_clip_text_source(write_tiny_clip(tmp_path / "clip", legacy_eos=False))
    tokenizer = service_tokenizer(source, tmp_path)
    (ids,) = served_ids(tokenizer, [TEXTS[2]])
    assert len(ids) == 77
    assert ids[-1] == source.pad_token_id  # <|endoftext|>


@pytest.mark.parametrize("full", [True, False], ids=["siglip-model", "siglip-text-model"])
def test_siglip_served_path_reproduces_the_checkpoint(tmp_path: Path, full: bool) -> None:
    directory = write_tiny_siglip(tmp_path / "siglip", full=full)
    source = load_siglip_text_source(directory)
    hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    assert (source.family, source.max_length, source.embedding_dim) == ("siglip", 64, 16)
    assert (source.padding, source.takes_attention_mask) == ("max_length", False)
    assert source.pad_token_id == hf.pad_token_id == 0
    tokenizer = service_tokenizer(source, tmp_path)
    encoded = hf(list(TEXTS), padding="max_length", truncation=True, max_length=64)
    served = served_feeds(source, tokenizer, TEXTS)
    assert list(served) == ["input_ids"]
    assert served["input_ids"].tolist() == encoded["input_ids"]
    module_against_reference(source, tokenizer)
    onnx_against_torch(source, tokenizer, tmp_path)


def test_siglip_normalized(tmp_path: Path) -> None:
    source = load_siglip_text_source(write_tiny_siglip(tmp_path / "siglip"), normalize=True)
    tokenizer = service_tokenizer(source, tmp_path)
    module_against_reference(source, tokenizer)
    np.testing.assert_allclose(
        np.linalg.norm(source.reference(list(TEXTS)), axis=1), 1.0, atol=1e-6
    )


def test_siglip_embeddings_depend_on_the_padding_id_and_length(tmp_path: Path) -> None:
    """Why the manifest pins both: a wrong padding id or dynamic padding moves the embedding
    (the pooled position is padding for short texts)."""
    source = load_siglip_text_source(write_tiny_siglip(tmp_path / "siglip"))
    feeds = served_feeds(source, service_tokenizer(source, tmp_path), TEXTS[:2])
    right = run_module(source, feeds)
    ids = feeds["input_ids"]
    wrong_pad = np.where(ids == source.pad_token_id, 1, ids)  # </s> instead of <pad>
    assert row_cosines(run_module(source, {"input_ids": wrong_pad}), right).max() < MIN_COSINE
    shorter = ids[:, :48]  # both texts fit in 48 tokens
    assert row_cosines(run_module(source, {"input_ids": shorter}), right).max() < MIN_COSINE
