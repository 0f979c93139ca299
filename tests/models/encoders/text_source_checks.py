"""Checks shared by the text source tests: the service's own tokeniser over a source's
tokenizer.json, the source module on those ids against the reference, and the ONNX export of
the module (dynamic batch and sequence axes) against torch at batch 1, 2 and 7."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from app.preprocess.text import TextTokenizer, clean_text
from models.encoders.encoder_sources import TextSource
from models.export.export_support import OPSET, legacy_exporter_warnings_silenced

MAX_CHARS = 100_000
MIN_COSINE = 0.9999
ONNX_TOLERANCE = 1e-5
# Not the loaders' own probe texts: plain, mixed case, long past any max_length here, CJK,
# Arabic, emoji (modifier and ZWJ sequence), surrounding whitespace, punctuation.
TEXTS: tuple[str, ...] = (
    "a red shoe",
    "Red Leather HandBag with a Slim Fit",
    " ".join(["Our best-selling ankle boot returns for another winter season."] * 15),
    "日本の赤い靴と黒い鞄",
    "حذاء أحمر مرحبا بالعالم",
    "👗 summer dress 👍🏽 for the family 👨‍👩‍👧",
    "  \t a blue dress, padded with whitespace \n ",
    "cotton; wool & leather (dark grey) - size 42!",
)
# Mixed lengths, so that the batch is padded.
BATCH = TEXTS


def service_tokenizer(source: TextSource, folder: Path) -> TextTokenizer:
    """The service's tokeniser for ``source``, configured as its manifest entry would be."""
    path = folder / "tokenizer.json"
    path.write_text(source.tokenizer_json, encoding="utf-8")
    return TextTokenizer(
        path,
        source.max_length,
        (8, 16, 32),
        padding=source.padding,
        pad_token_id=source.pad_token_id,
        prompt=source.prompt,
    )


def served_ids(tokenizer: TextTokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The unpadded ids the service feeds for each text."""
    return [tokenizer.encode(clean_text(text, MAX_CHARS)).tolist() for text in texts]


def served_feeds(
    source: TextSource, tokenizer: TextTokenizer, texts: Sequence[str]
) -> dict[str, np.ndarray]:
    """The padded graph inputs the service builds for ``texts`` (one batch)."""
    batch = tokenizer.pad([tokenizer.encode(clean_text(t, MAX_CHARS)) for t in texts])
    feeds = {source.input_ids_name: batch.input_ids}
    if source.takes_attention_mask:
        feeds[source.attention_mask_name] = batch.attention_mask
    return feeds


def run_module(source: TextSource, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The source module's embeddings for ``feeds``."""
    args = [torch.from_numpy(feeds[source.input_ids_name])]
    if source.takes_attention_mask:
        args.append(torch.from_numpy(feeds[source.attention_mask_name]))
    with torch.no_grad():
        out = source.module(*args)
    return np.asarray(out.numpy(), dtype=np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each row's cosine (float64)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.asarray(np.einsum("ij,ij->i", a64, b64) / norms)


def module_against_reference(
    source: TextSource, tokenizer: TextTokenizer, texts: Sequence[str] = BATCH
) -> float:
    """The worst cosine between the module on the served ids and the reference, over one
    padded batch of ``texts`` and each text alone; asserts the shapes and the threshold."""
    expected = source.reference(list(texts))
    assert expected.shape == (len(texts), source.embedding_dim)
    batched = run_module(source, served_feeds(source, tokenizer, texts))
    alone = np.concatenate(
        [run_module(source, served_feeds(source, tokenizer, [t])) for t in texts]
    )
    worst = float(min(row_cosines(batched, expected).min(), row_cosines(alone, expected).min()))
    assert worst >= MIN_COSINE, f"cosine {worst:.6f} < {MIN_COSINE}"
    return worst


def export_onnx(source: TextSource, path: Path, sample: dict[str, np.ndarray]) -> list[str]:
    """Export the module (opset 17, dynamic batch and sequence axes); returns input names."""
    names = [source.input_ids_name]
    if source.takes_attention_mask:
        names.append(source.attention_mask_name)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with legacy_exporter_warnings_silenced(), warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            source.module,
            tuple(torch.from_numpy(sample[name]) for name in names),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=[source.output_name],
            dynamic_axes={**axes, source.output_name: {0: "batch"}},
        )
    return names


def onnx_against_torch(source: TextSource, tokenizer: TextTokenizer, folder: Path) -> float:
    """Export, then run ONNX Runtime on served batches of 1, 2 and 7 texts (mixed lengths, so
    padded, and sequence lengths other than the traced one); returns the worst abs diff and
    asserts it is within ``ONNX_TOLERANCE``."""
    path = folder / "text_encoder.onnx"
    export_onnx(source, path, served_feeds(source, tokenizer, TEXTS[:2]))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for texts in (TEXTS[6:7], TEXTS[3:5], TEXTS[:7]):
        feeds = served_feeds(source, tokenizer, texts)
        (actual,) = session.run([source.output_name], feeds)
        expected = run_module(source, feeds)
        assert actual.shape == expected.shape == (len(texts), source.embedding_dim)
        worst = max(worst, float(np.max(np.abs(actual - expected))))
    assert worst <= ONNX_TOLERANCE, f"ONNX Runtime against torch: {worst:.3g}"
    return worst


def unpadded(ids: Sequence[Sequence[int]], mask: Sequence[Sequence[int]]) -> list[list[int]]:
    """Rows of a right-padded batch without their padding."""
    return [
        [i for i, m in zip(row, keep, strict=True) if m]
        for row, keep in zip(ids, mask, strict=True)
    ]


def st_ids(directory: Path, prompt: str) -> list[list[int]]:
    """The ids sentence-transformers itself feeds its model for ``TEXTS``."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    features = model.preprocess(list(TEXTS), prompt=prompt or None)
    return unpadded(features["input_ids"].tolist(), features["attention_mask"].tolist())
