from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import build_engine
from app.core.text_cache import TextEmbeddingCache
from app.preprocess.text import TextTokenizer


def test_lru_evicts_least_recently_used() -> None:
    cache = TextEmbeddingCache(2)
    cache.put("a", np.ones(3))
    cache.put("b", np.zeros(3))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", np.full(3, 2.0))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


def test_cached_embeddings_are_read_only_copies() -> None:
    cache = TextEmbeddingCache(4)
    source = np.ones(3)
    cache.put("a", source)
    source[0] = 5.0
    cached = cache.get("a")
    assert cached is not None
    assert cached[0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        cached[0] = 2.0


def test_zero_capacity_disables() -> None:
    cache = TextEmbeddingCache(0)
    cache.put("a", np.ones(3))
    assert cache.get("a") is None
    assert len(cache) == 0


def test_length_buckets(tiny_bundle_dir: Path) -> None:
    tokenizer = TextTokenizer(
        tiny_bundle_dir / "tokenizer.json", max_length=8, length_buckets=(2, 4, 16)
    )
    assert tokenizer.length_buckets == [2, 4, 8]
    one = tokenizer.encode("cat")
    three = tokenizer.encode("a big cat")
    five = tokenizer.encode("a big red cat photo")
    assert tokenizer.pad([one]).input_ids.shape == (1, 2)
    assert tokenizer.pad([one, three]).input_ids.shape == (2, 4)
    batch = tokenizer.pad([one, five])
    assert batch.input_ids.shape == (2, 8)
    assert batch.attention_mask.sum(axis=1).tolist() == [1, 5]


def test_pipeline_uses_cache_and_encodes_each_distinct_miss_once(
    tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = build_engine(Settings(bundle_path=tiny_bundle_dir, device="cpu", text_cache_size=8))
    pipeline = engine.pipeline
    calls: list[int] = []
    real_encode = pipeline.encode_texts

    def counting(token_ids: list[np.ndarray]) -> np.ndarray:
        calls.append(len(token_ids))
        return real_encode(token_ids)

    monkeypatch.setattr(pipeline, "encode_texts", counting)

    def item(text: str) -> PreparedItem:
        return PreparedItem(
            pixels=np.zeros((3, 32, 32), np.float32),
            text=text,
            token_ids=pipeline.tokenizer.encode(text),
        )

    first = pipeline.run([item("a cat"), item("a dog"), item("a cat")])
    assert calls == [2]  # two distinct texts, one encoder call
    second = pipeline.run([item("a dog"), item("a cat")])
    assert calls == [2]  # both cached
    np.testing.assert_allclose(second, first[[1, 0]], atol=1e-6)
    assert pipeline.text_cache.hits == 2
    assert pipeline.text_cache.misses == 2
    # Cached and uncached embeddings give the same answer as a cache-less pipeline.
    uncached = build_engine(Settings(bundle_path=tiny_bundle_dir, device="cpu", text_cache_size=0))
    np.testing.assert_allclose(
        uncached.pipeline.run([item("a dog"), item("a cat")]), second, atol=1e-6
    )
