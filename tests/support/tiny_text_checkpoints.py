"""Tiny, seeded, randomly initialised text checkpoints written offline, in the layouts the text
source loaders read: a BERT with a WordPiece tokenizer, sentence-transformers directories built
on it, a CLIP text tower with a byte-level BPE tokenizer and a SigLIP text tower with a Unigram
tokenizer (both tokenizers trained in-process). Each writer takes well under a few seconds.

The weights are random (initialiser range widened so that different texts give clearly
different embeddings); only the file layouts and the pipelines' arithmetic are real.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch import nn

HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 64
# Every tiny tower's width; text towers have LAYERS layers, the vision towers one.
_TOWER: dict[str, Any] = {
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_attention_heads": HEADS,
}
_TINY_VISION: dict[str, Any] = {
    **_TOWER,
    "num_hidden_layers": 1,
    "image_size": 32,
    "patch_size": 16,
}
BERT_POSITIONS = 64
CLIP_POSITIONS = 77
SIGLIP_POSITIONS = 64
PROJECTION = 16
INIT_RANGE = 0.2

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Cased on purpose: lower-casing (do_lower_case) then changes the ids.
BERT_WORDS = (
    "a",
    "an",
    "the",
    "and",
    "with",
    "for",
    "of",
    "in",
    "on",
    "to",
    "is",
    "it",
    "red",
    "Red",
    "RED",
    "blue",
    "Blue",
    "green",
    "black",
    "white",
    "grey",
    "dark",
    "shoe",
    "Shoe",
    "shoes",
    "dress",
    "Dress",
    "bag",
    "handbag",
    "boot",
    "boots",
    "sneaker",
    "leather",
    "wool",
    "cotton",
    "summer",
    "winter",
    "running",
    "office",
    "slim",
    "fit",
    "light",
    "weight",
    "print",
    "floral",
    "sleeve",
    "sleeves",
    "size",
    "sizes",
    "query",
    "passage",
    "document",
    "photo",
    "cat",
    "dog",
    "##s",
    "##ed",
    "##ing",
    "##er",
    "##ly",
    "##y",
    "##es",
    "日",
    "本",
    "語",
    "の",
    "靴",
    "赤",
    "い",
    "مرحبا",
    "حذاء",
    "أحمر",
    "👍",
    "👗",
    "🏽",
)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PUNCTUATION = ".,;:!?'\"-()/&%"

CLIP_CORPUS = (
    "a red running shoe",
    "a blue summer dress with a floral print",
    "a leather handbag for the office",
    "slim-fit wool trousers in charcoal grey",
    "it's a photo of a cat and a dog",
    "lightweight cotton sneakers, sizes 36 to 42",
    "black ankle boots with a side zip",
)
SIGLIP_CORPUS = (
    *CLIP_CORPUS,
    "日本語の靴 赤い靴",
    "حذاء أحمر مرحبا",
    "a dress 👗 with a thumbs up 👍🏽",
)
# SigLIP's tokenizer (``SiglipTokenizer.canonicalize_text``) lower-cases, removes ASCII
# punctuation, collapses whitespace and strips; the tiny tokenizer bakes that into its normalizer.
_ASCII_PUNCTUATION = r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"""


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: local files only
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def bert_vocab() -> dict[str, int]:
    """The tiny WordPiece vocabulary: specials, words, characters and their ``##`` forms."""
    tokens = list(BERT_SPECIALS) + list(BERT_WORDS)
    for char in _LETTERS + _PUNCTUATION:
        tokens += [char, "##" + char]
    unique = list(dict.fromkeys(tokens))
    return {token: index for index, token in enumerate(unique)}


def bert_tokenizer() -> Tokenizer:
    """A cased BERT WordPiece tokenizer over ``bert_vocab`` (the ``tokenizers`` library)."""
    vocab = bert_vocab()
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def write_tiny_bert(directory: Path, *, seed: int = 0) -> Path:
    """A BERT (hidden 32, 2 layers, 64 positions) with a cased WordPiece tokenizer whose
    ``model_max_length`` (512) exceeds the positions, as many real checkpoints' do."""
    _quiet_transformers()
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    # transformers 5's BertTokenizer is the tokenizers-backed one (BertTokenizerFast before).
    wrapped = BertTokenizer(
        tokenizer_object=bert_tokenizer(), do_lower_case=False, model_max_length=512
    )
    wrapped.save_pretrained(str(directory))
    config = BertConfig(
        vocab_size=len(bert_vocab()),
        **_TOWER,
        num_hidden_layers=LAYERS,
        max_position_embeddings=BERT_POSITIONS,
        initializer_range=INIT_RANGE,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    return directory


def write_tiny_sentence_transformer(
    directory: Path,
    *,
    pooling: str | Sequence[str] = "mean",
    dense: Sequence[tuple[int, nn.Module]] = (),
    dense_bias: bool = True,
    dense_residual: bool = False,
    normalize: bool = False,
    do_lower_case: bool = False,
    max_seq_length: int | None = 24,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    include_prompt: bool = True,
    legacy_config: bool = False,
    seed: int = 0,
) -> Path:
    """A sentence-transformers directory over the tiny BERT, saved by
    ``SentenceTransformer(modules=[...]).save``: Transformer, Pooling (``pooling``: one mode or
    several), one Dense per ``(out_features, activation)`` in ``dense`` (with a bias
    and a residual connection as ``dense_bias`` and ``dense_residual`` say), then Normalize.

    ``legacy_config`` writes ``max_seq_length`` and ``do_lower_case`` into
    ``sentence_bert_config.json`` with the tokenizer left as it was, as sentence-transformers
    before 6 saved them (6 writes the length into the tokenizer's config and bakes
    lower-casing into ``tokenizer.json``).
    """
    _quiet_transformers()
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    base = write_tiny_bert(directory.with_name(directory.name + "-bert"), seed=seed)
    transformer = Transformer(
        str(base),
        max_seq_length=None if legacy_config else max_seq_length,
        do_lower_case=do_lower_case and not legacy_config,
    )
    modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    modules: list[nn.Module] = [
        transformer,
        Pooling(
            HIDDEN,
            pooling_mode=modes[0] if len(modes) == 1 else modes,
            include_prompt=include_prompt,
        ),
    ]
    torch.manual_seed(seed + 1)
    width = HIDDEN * len(modes)
    for out_features, activation in dense:
        modules.append(
            Dense(
                width,
                out_features,
                bias=dense_bias,
                activation_function=activation,
                use_residual=dense_residual,
            )
        )
        width = out_features
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(
        modules=modules,
        device="cpu",
        prompts=prompts,
        default_prompt_name=default_prompt_name,
    )
    model.save(str(directory))
    shutil.rmtree(base)
    if legacy_config:
        config_path = directory / "sentence_bert_config.json"
        config = json.loads(config_path.read_text())
        config["max_seq_length"] = max_seq_length
        config["do_lower_case"] = do_lower_case
        config_path.write_text(json.dumps(config, indent=2))
    return directory


def _clip_tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges laid out as CLIP's: the 256 byte symbols, the
    same with ``</w>``, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``
    (so the end-of-text token has the largest id, as in OpenAI's vocabulary)."""
    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"""
                    r"""[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        end_of_word_suffix="</w>",
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(CLIP_CORPUS, trainer)
    raw_merges = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [(str(a), str(b)) for a, b in raw_merges]
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    unique = list(dict.fromkeys(tokens))
    return {token: index for index, token in enumerate(unique)}, merges


def write_tiny_clip(directory: Path, *, full: bool = True, legacy_eos: bool = True) -> Path:
    """A CLIP text tower with its ``CLIPTokenizer``: a whole ``CLIPModel`` (with a tiny vision
    tower) when ``full``, else a ``CLIPTextModelWithProjection``. ``legacy_eos`` writes
    ``eos_token_id`` 2, as checkpoints converted before transformers PR #24773 have it
    (pooling at the largest id); otherwise the real end-of-text id."""
    _quiet_transformers()
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = _clip_tokenizer_vocab()
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # pairs, as tokenizers' BPE takes them
        model_max_length=CLIP_POSITIONS,
    )
    tokenizer.save_pretrained(str(directory))
    eot = vocab["<|endoftext|>"]
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        **_TOWER,
        num_hidden_layers=LAYERS,
        max_position_embeddings=CLIP_POSITIONS,
        projection_dim=PROJECTION,
        initializer_range=INIT_RANGE,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=2 if legacy_eos else eot,
        pad_token_id=eot,
    )
    torch.manual_seed(0)
    model: nn.Module
    if full:
        vision_config = CLIPVisionConfig(**_TINY_VISION, projection_dim=PROJECTION)
        config = CLIPConfig(
            text_config=text_config.to_dict(),
            vision_config=vision_config.to_dict(),
            projection_dim=PROJECTION,
            initializer_factor=2.0,
        )
        model = CLIPModel(config)
    else:
        text_config.initializer_factor = 2.0
        model = CLIPTextModelWithProjection(text_config)
    model.save_pretrained(str(directory))
    return directory


def siglip_tokenizer() -> Tokenizer:
    """A Unigram tokenizer trained on ``SIGLIP_CORPUS`` that canonicalises text as SigLIP's does
    (lower-case, no ASCII punctuation, whitespace collapsed and stripped) and appends ``</s>``;
    ``<pad>`` (id 0) differs from ``</s>`` (id 1) so that a wrong padding id shows."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Replace(Regex(_ASCII_PUNCTUATION), ""),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(SIGLIP_CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))]
    )
    return tokenizer


def write_tiny_siglip(directory: Path, *, full: bool = True) -> Path:
    """A SigLIP text tower (64 positions) with its tokenizer: a whole ``SiglipModel`` (with a
    tiny vision tower) when ``full``, else a ``SiglipTextModel``."""
    _quiet_transformers()
    from transformers import (
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipModel,
        SiglipTextConfig,
        SiglipTextModel,
        SiglipVisionConfig,
    )

    directory.mkdir(parents=True, exist_ok=True)
    backend = siglip_tokenizer()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=SIGLIP_POSITIONS,
    )
    tokenizer.save_pretrained(str(directory))
    text_config = SiglipTextConfig(
        vocab_size=backend.get_vocab_size(),
        **_TOWER,
        num_hidden_layers=LAYERS,
        max_position_embeddings=SIGLIP_POSITIONS,
        projection_size=PROJECTION,
        pad_token_id=backend.token_to_id("<pad>"),
        eos_token_id=backend.token_to_id("</s>"),
    )
    torch.manual_seed(0)
    model: nn.Module
    if full:
        vision_config = SiglipVisionConfig(**_TINY_VISION)
        config = SiglipConfig(
            text_config=text_config.to_dict(), vision_config=vision_config.to_dict()
        )
        model = SiglipModel(config)
    else:
        model = SiglipTextModel(text_config)
    model.save_pretrained(str(directory))
    return directory
