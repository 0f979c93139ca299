"""Plain transformers text models as text sources: for every pooling mode, with and without
normalisation, the service's tokenisation gives the ids the checkpoint's tokenizer gives, the
module matches AutoModel + numpy pooling, and the ONNX export matches torch; the real
all-MiniLM-L6-v2 equals the existing recipe's encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from models.encoders.hf_text_source import load_hf_text_source, numpy_pool
from models.encoders.text_pooling import ST_POOLING_MODES, st_pooling
from tests.models.encoders.text_source_checks import (
    TEXTS,
    module_against_reference,
    onnx_against_torch,
    served_feeds,
    served_ids,
    service_tokenizer,
)
from tests.support.tiny_text_checkpoints import write_tiny_bert


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def _hf_ids(directory: Path, max_length: int) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    encoded = tokenizer(list(TEXTS), truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("pooling", ST_POOLING_MODES)
def test_served_path_reproduces_the_checkpoint(
    bert_dir: Path, tmp_path: Path, pooling: str, normalize: bool
) -> None:
    source = load_hf_text_source(bert_dir, pooling=pooling, normalize=normalize, max_length=20)
    assert (source.family, source.max_length, source.embedding_dim) == ("transformers", 20, 32)
    tokenizer = service_tokenizer(source, tmp_path)
    assert served_ids(tokenizer, TEXTS) == _hf_ids(bert_dir, 20)
    module_against_reference(source, tokenizer)
    onnx_against_torch(source, tokenizer, tmp_path)
    if normalize:
        embeddings = source.reference(list(TEXTS))
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_max_length_defaults_to_the_tokenizer_limit_capped_by_the_positions(
    bert_dir: Path, tmp_path: Path
) -> None:
    # tokenizer_config says 512, the model has 64 positions.
    source = load_hf_text_source(bert_dir, pooling="mean")
    assert source.max_length == 64
    tokenizer = service_tokenizer(source, tmp_path)
    assert served_ids(tokenizer, TEXTS) == _hf_ids(bert_dir, 64)
    assert max(len(ids) for ids in served_ids(tokenizer, TEXTS)) == 64
    module_against_reference(source, tokenizer)


def test_numpy_reference_pooling_equals_the_graph_pooling() -> None:
    """The two implementations the parity check compares agree on their own."""
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 5, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    for mode in ST_POOLING_MODES:
        ours = st_pooling(mode)(hidden, mask, mask).numpy()
        theirs = numpy_pool(mode, hidden.double().numpy(), mask.numpy())
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=mode)


def test_real_all_minilm_l6_v2_equals_sentence_transformers(tmp_path: Path) -> None:
    """The default recipe's text encoder is the generic path (mean, normalised, 128 tokens),
    and equals sentence-transformers' own ``encode`` of the same checkpoint at that length."""
    from sentence_transformers import SentenceTransformer

    from models.recipes.fashion_mnist import minilm_export

    directory = minilm_export.model_dir()
    source = minilm_export.text_source()
    assert (source.max_length, source.embedding_dim, source.pad_token_id) == (128, 384, None)
    texts = list(minilm_export.CHECK_SENTENCES)
    feeds = minilm_export.tokenize(
        minilm_export.load_tokenizer(directory / "tokenizer.json"), texts
    )
    args = (torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    with torch.no_grad():
        actual = source.module(*args).numpy()
    reference = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    reference.max_seq_length = 128
    expected = reference.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    # The served tokenisation is the recipe's, and the served path matches the reference.
    tokenizer = service_tokenizer(source, tmp_path)
    served = served_feeds(source, tokenizer, texts)
    np.testing.assert_array_equal(
        served["input_ids"][:, : feeds["input_ids"].shape[1]], feeds["input_ids"]
    )
    module_against_reference(source, tokenizer, texts + list(TEXTS))
