"""Build tiny but real ONNX bundles (onnx.helper) for fast unit and API tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers

from app.bundle.loader import sha256_file
from app.bundle.manifest import DEFAULT_MIN_COSINE
from app.config.settings import Settings
from app.core.encoders import build_encoders

LABELS = ["cat", "dog", "bird"]
WORDS = ["a", "the", "small", "big", "cat", "dog", "bird", "red", "blue", "photo", "of"]
CROP = 32
RESIZE = 36
IMAGE_DIM = 8
TEXT_DIM = 4
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def image_encoder(path: Path, rng: np.random.Generator, crop: int = CROP) -> None:
    weight = rng.normal(size=(3, IMAGE_DIM)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["features"]),
        ],
        "tiny_image_encoder",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["batch", 3, crop, crop]
            )
        ],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", IMAGE_DIM])],
        [numpy_helper.from_array(weight, "w")],
    )
    _save(graph, path)


def text_encoder(path: Path, rng: np.random.Generator, vocab_size: int) -> None:
    table = rng.normal(size=(vocab_size, TEXT_DIM)).astype(np.float32)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")
    axes2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["sentence_embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", TEXT_DIM]
            )
        ],
        [numpy_helper.from_array(table, "table"), axes, axes2],
    )
    _save(graph, path)


@dataclass(frozen=True)
class TinyHead:
    """The tiny head's parameters, for computing expected outputs in tests."""

    weight: np.ndarray  # [IMAGE_DIM + TEXT_DIM, classes]
    bias: np.ndarray
    null_image: np.ndarray  # [IMAGE_DIM]: used where image_present is 0
    null_text: np.ndarray  # [TEXT_DIM]

    def logits(
        self,
        image: np.ndarray,
        text: np.ndarray,
        image_present: np.ndarray | None = None,
        text_present: np.ndarray | None = None,
    ) -> np.ndarray:
        """What head.onnx computes, in numpy (presence: boolean [N], default all present)."""
        if image_present is not None:
            image = np.where(image_present[:, None], image, self.null_image)
        if text_present is not None:
            text = np.where(text_present[:, None], text, self.null_text)
        logits: np.ndarray = np.concatenate([image, text], axis=1) @ self.weight + self.bias
        return logits


def fusion_head(
    path: Path, rng: np.random.Generator, classes: int, *, presence: bool = False
) -> TinyHead:
    """Concat + linear. With ``presence``, inputs ``image_present``/``text_present`` [batch, 1]
    swap a missing modality's features for a fixed null embedding, as trained heads do."""
    params = TinyHead(
        weight=rng.normal(size=(IMAGE_DIM + TEXT_DIM, classes)).astype(np.float32),
        bias=rng.normal(size=(classes,)).astype(np.float32),
        null_image=rng.normal(size=(IMAGE_DIM,)).astype(np.float32),
        null_text=rng.normal(size=(TEXT_DIM,)).astype(np.float32),
    )
    inputs = [
        helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["batch", IMAGE_DIM]),
        helper.make_tensor_value_info("text_features", TensorProto.FLOAT, ["batch", TEXT_DIM]),
    ]
    initializers = [
        numpy_helper.from_array(params.weight, "w"),
        numpy_helper.from_array(params.bias, "b"),
    ]
    nodes = []
    image, text = "image_features", "text_features"
    if presence:
        initializers += [
            numpy_helper.from_array(params.null_image[None, :], "null_image"),
            numpy_helper.from_array(params.null_text[None, :], "null_text"),
            numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), "one"),
        ]
        for modality in ("image", "text"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"{modality}_present", TensorProto.FLOAT, ["batch", 1]
                )
            )
            p = f"{modality}_present"
            nodes += [
                helper.make_node("Mul", [f"{modality}_features", p], [f"{modality}_kept"]),
                helper.make_node("Sub", ["one", p], [f"{modality}_absent"]),
                helper.make_node(
                    "Mul", [f"null_{modality}", f"{modality}_absent"], [f"{modality}_null"]
                ),
                helper.make_node(
                    "Add", [f"{modality}_kept", f"{modality}_null"], [f"{modality}_in"]
                ),
            ]
        image, text = "image_in", "text_in"
    nodes += [
        helper.make_node("Concat", [image, text], ["both"], axis=1),
        helper.make_node("MatMul", ["both", "w"], ["raw"]),
        helper.make_node("Add", ["raw", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fusion_head",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializers,
    )
    _save(graph, path)
    return params


def tokenizer(path: Path) -> int:
    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return len(vocab)


def manifest_dict(root: Path) -> dict[str, Any]:
    def ref(name: str) -> dict[str, str]:
        return {"file": name, "sha256": sha256_file(root / name)}

    return {
        "schema_version": 1,
        "name": "tiny-test-bundle",
        "version": "0.0.1",
        "description": "random weights, for tests",
        "labels": list(LABELS),
        "image_encoder": ref("image.onnx")
        | {
            "input": "pixel_values",
            "output": "features",
            "embedding_dim": IMAGE_DIM,
            "preprocess": {
                "color_mode": "RGB",
                "resize_short_side": RESIZE,
                "crop_size": CROP,
                "interpolation": "bilinear",
                "mean": [127.5, 127.5, 127.5],
                "std": [64.0, 64.0, 64.0],
                "layout": "NCHW",
            },
        },
        "text_encoder": ref("text.onnx")
        | {
            "tokenizer": ref("tokenizer.json"),
            "max_length": 8,
            "input_ids": "input_ids",
            "attention_mask": "attention_mask",
            "output": "sentence_embedding",
            "embedding_dim": TEXT_DIM,
        },
        "fusion_head": ref("head.onnx")
        | {"image_input": "image_features", "text_input": "text_features", "output": "logits"},
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def make_tiny_bundle(root: Path, seed: int = 0) -> Path:
    """Write a complete valid bundle to ``root`` and return it."""
    make_tiny_bundle_with_head(root, seed)
    return root


def make_named_bundle(root: Path, name: str, *, seed: int, version: str = "1.0.0") -> Path:
    """A tiny bundle with its own weights (``seed``), name and version."""
    make_tiny_bundle(root, seed)
    manifest = manifest_dict(root) | {"name": name, "version": version}
    write_manifest(root, manifest)
    return root


def make_tiny_bundle_with_head(
    root: Path, seed: int = 0, *, presence: bool = False, temperature: float = 1.0
) -> TinyHead:
    """Write a bundle (with presence inputs and a temperature if asked) and return its head's
    parameters. The encoders are the same as ``make_tiny_bundle``'s for the same seed."""
    return _bundle_with_head(root, seed, LABELS, {}, presence=presence, temperature=temperature)


def _bundle_with_head(
    root: Path,
    seed: int,
    labels: list[str],
    fields: dict[str, Any],
    *,
    presence: bool,
    temperature: float,
    thresholds: list[float] | None = None,
) -> TinyHead:
    """The tiny encoders (from ``seed``), a head over ``labels`` and the manifest, with
    ``fields`` added at its top level and the head's ``thresholds`` when given."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab_size = tokenizer(root / "tokenizer.json")
    image_encoder(root / "image.onnx", rng)
    text_encoder(root / "text.onnx", rng, vocab_size)
    head = fusion_head(root / "head.onnx", rng, len(labels), presence=presence)
    manifest = manifest_dict(root) | {"labels": list(labels)} | fields
    if presence:
        manifest["fusion_head"] |= {
            "image_present": "image_present",
            "text_present": "text_present",
        }
    if temperature != 1.0:
        manifest["fusion_head"]["temperature"] = temperature
    if thresholds is not None:
        manifest["fusion_head"]["thresholds"] = thresholds
    write_manifest(root, manifest)
    return head


# A tiny multilabel bundle's labels (tags an item may have several of, or none) and thresholds.
TAGS = ["furry", "pet", "flying", "red"]
TAG_THRESHOLDS = [0.5, 0.4, 0.6, 0.55]


def make_tiny_multilabel_bundle(
    root: Path,
    seed: int = 0,
    *,
    presence: bool = True,
    temperature: float = 1.0,
    thresholds: list[float] | None = None,
) -> TinyHead:
    """A multilabel bundle (``TAGS``, one logit per tag, sigmoid probabilities, per-tag
    ``thresholds``) with the same encoders as ``make_tiny_bundle`` for the same seed; returns
    its head's parameters."""
    fields = {"name": "tiny-multilabel-bundle", "task": "multilabel"}
    return _bundle_with_head(
        root,
        seed,
        TAGS,
        fields,
        presence=presence,
        temperature=temperature,
        thresholds=list(thresholds or TAG_THRESHOLDS),
    )


def add_golden(root: Path, *, min_cosine: float = DEFAULT_MIN_COSINE) -> dict[str, Any]:
    """Give the bundle at ``root`` (servable or base) golden inputs, as the export tool does:
    the default golden inputs embedded by its encoders (``build_encoders``), ``golden.json``
    written and the manifest rewritten at schema version 2 with the ``golden`` entry, which
    is returned."""
    # Imported here: the toolkit's writer is for the tests that ask for golden inputs.
    from models.encoders.golden_writer import golden_images, golden_texts, write_golden

    settings = Settings(
        bundle_path=root, device="cpu", intra_op_threads=1, verify_golden_inputs=False
    )
    pipeline = build_encoders(settings).pipeline
    entry = write_golden(root, pipeline, golden_images(), golden_texts(), min_cosine)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    write_manifest(root, manifest | {"schema_version": 2, "golden": entry})
    return entry


def make_tiny_base_bundle(root: Path, seed: int = 0) -> Path:
    """The tiny bundle's encoders alone: a base bundle, as ``export-encoders`` writes one."""
    make_tiny_bundle(root, seed)
    manifest = manifest_dict(root)
    for key in ("labels", "fusion_head"):
        del manifest[key]
    (root / "head.onnx").unlink()
    write_manifest(root, manifest)
    return root
