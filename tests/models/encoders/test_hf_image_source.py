"""transformers vision checkpoints as image sources: for every family, the manifest mapping
reproduces the processor's own pixels through the service's decoder, the module's embeddings of
those pixels match the reference, and the module exports to ONNX with a dynamic batch axis."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers
from PIL import Image

from app.bundle.manifest import ImagePreprocess
from app.preprocess.image import ImageDecoder
from models.encoders.encoder_sources import ImageSource, SourceError
from models.encoders.hf_image_preprocess import image_preprocess_from_hf
from models.encoders.hf_image_source import (
    FAMILIES,
    load_hf_image_source,
    load_timm_image_source,
    processor_settings,
)
from models.export.export_support import OPSET, legacy_exporter_warnings_silenced
from tests.support.images import encode_image, photo
from tests.support.tiny_image_checkpoints import (
    IMAGE_FAMILIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_MEAN,
    OPENAI_STD,
)

# Odd sizes both ways round; 71x50 (short side 36 -> 51x36) and 45x33 (short side 32 -> 43x32)
# put the crop offset at x.5, where flooring and rounding differ.
SIZES = [(45, 33), (33, 45), (64, 64), (100, 37), (71, 50)]
PIXEL_TOLERANCE = 1e-5
MIN_COSINE = 0.9999

HALF: dict[str, Any] = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
FLOOR: dict[str, Any] = {"crop_offset_rounding": "floor", "rescale_factor": 1 / 255}
IMAGENET: dict[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
CLIP = ImagePreprocess(
    resize_short_side=32,
    crop_size=32,
    interpolation="bicubic",
    mean=OPENAI_MEAN,
    std=OPENAI_STD,
    **FLOOR,
)
SIGLIP = ImagePreprocess(
    resize="exact", resize_height=32, resize_width=32, interpolation="bicubic", **HALF, **FLOOR
)
EXPECTED_PREPROCESS = {
    "vit": ImagePreprocess(
        resize="exact", resize_height=32, resize_width=32, interpolation="bilinear", **HALF, **FLOOR
    ),
    "deit": ImagePreprocess(
        resize="exact",
        resize_height=36,
        resize_width=36,
        crop_size=32,
        interpolation="bicubic",
        **IMAGENET,
        **FLOOR,
    ),
    "beit": ImagePreprocess(
        resize="exact", resize_height=32, resize_width=32, interpolation="bicubic", **HALF, **FLOOR
    ),
    "convnext": ImagePreprocess(
        crop_pct=0.875, crop_size=32, interpolation="bicubic", **HALF, **FLOOR
    ),
    "swin": ImagePreprocess(
        resize="exact",
        resize_height=32,
        resize_width=32,
        interpolation="bicubic",
        **IMAGENET,
        **FLOOR,
    ),
    "dinov2": ImagePreprocess(
        resize_short_side=36, crop_size=32, interpolation="bicubic", **IMAGENET, **FLOOR
    ),
    "resnet": ImagePreprocess(
        crop_pct=0.875, crop_size=32, interpolation="bilinear", **IMAGENET, **FLOOR
    ),
    "clip": CLIP,
    "clip_vision": CLIP,
    "siglip": SIGLIP,
    "siglip_vision": SIGLIP,
}
# family -> (ImageSource.family, the PIL processor class, the model class, embedding width)
EXPECTED_SOURCE = {
    "vit": ("vit", "ViTImageProcessorPil", "ViTModel", 32),
    "deit": ("deit", "DeiTImageProcessorPil", "DeiTModel", 32),
    "beit": ("beit", "BeitImageProcessorPil", "BeitModel", 32),
    "convnext": ("convnext", "ConvNextImageProcessorPil", "ConvNextModel", 16),
    "swin": ("swin", "ViTImageProcessorPil", "SwinModel", 32),
    "dinov2": ("dinov2", "BitImageProcessorPil", "Dinov2Model", 32),
    "resnet": ("resnet", "ConvNextImageProcessorPil", "ResNetModel", 16),
    "clip": ("clip", "CLIPImageProcessorPil", "CLIPVisionModelWithProjection", 16),
    "clip_vision": ("clip", "CLIPImageProcessorPil", "CLIPVisionModelWithProjection", 16),
    "siglip": ("siglip", "SiglipImageProcessorPil", "SiglipVisionModel", 32),
    "siglip_vision": ("siglip", "SiglipImageProcessorPil", "SiglipVisionModel", 32),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-checkpoints")
    return {name: write(root / name) for name, write in IMAGE_FAMILIES.items()}


@pytest.fixture(scope="module")
def sources(checkpoints: dict[str, Path]) -> dict[str, ImageSource]:
    return {name: load_hf_image_source(path) for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def encoded() -> list[bytes]:
    return [encode_image(photo(w, h, seed=i)) for i, (w, h) in enumerate(SIZES)]


def opened(encoded: list[bytes]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(data)) for data in encoded]


def decoded(spec: ImagePreprocess, encoded: list[bytes]) -> np.ndarray:
    decoder = ImageDecoder(spec, max_pixels=10_000_000, jpeg_draft=False)
    return np.stack([decoder(data) for data in encoded])


def processor_pixels(family: str, path: Path, encoded: list[bytes]) -> np.ndarray:
    processor_class = getattr(transformers, EXPECTED_SOURCE[family][1])
    processor = processor_class.from_pretrained(path)
    return np.asarray(processor(opened(encoded), return_tensors="np")["pixel_values"])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = np.sum(a64 * b64, axis=1)
    result: np.ndarray = dots / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return result


def test_every_supported_model_type_has_a_tiny_checkpoint(checkpoints: dict[str, Path]) -> None:
    written = {
        json.loads((path / "config.json").read_text())["model_type"]
        for path in checkpoints.values()
    }
    assert written == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_the_mapping_gives_the_expected_preprocess(
    family: str, sources: dict[str, ImageSource]
) -> None:
    assert sources[family].preprocess == EXPECTED_PREPROCESS[family]


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_the_source_names_its_family_reference_and_width(
    family: str, sources: dict[str, ImageSource]
) -> None:
    source = sources[family]
    name, processor, model, dim = EXPECTED_SOURCE[family]
    assert source.family == name
    assert source.reference_name.startswith(f"transformers {processor} + {model} (")
    assert source.embedding_dim == dim
    assert source.alternatives == {}
    assert not source.module.training


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_the_service_decoder_gives_the_processors_pixels(
    family: str,
    sources: dict[str, ImageSource],
    checkpoints: dict[str, Path],
    encoded: list[bytes],
) -> None:
    ours = decoded(sources[family].preprocess, encoded)
    theirs = processor_pixels(family, checkpoints[family], encoded)
    assert ours.shape == theirs.shape == (len(SIZES), 3, 32, 32)
    assert np.abs(ours - theirs).max() <= PIXEL_TOLERANCE


@pytest.mark.parametrize("family", ["clip", "dinov2", "convnext"])
def test_rounded_crop_offsets_would_not_match(
    family: str,
    sources: dict[str, ImageSource],
    checkpoints: dict[str, Path],
    encoded: list[bytes],
) -> None:
    """The images put a short-side family's crop offset at x.5: the floor is needed."""
    rounded = sources[family].preprocess.model_copy(update={"crop_offset_rounding": "round"})
    theirs = processor_pixels(family, checkpoints[family], encoded)
    assert np.abs(decoded(rounded, encoded) - theirs).max() > 0.1


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_embeddings_of_the_decoders_tensors_match_the_reference(
    family: str, sources: dict[str, ImageSource], encoded: list[bytes]
) -> None:
    source = sources[family]
    with torch.no_grad():
        ours = source.module(torch.from_numpy(decoded(source.preprocess, encoded))).numpy()
    reference = source.reference(opened(encoded))
    assert ours.dtype == reference.dtype == np.float32
    assert ours.shape == reference.shape == (len(SIZES), source.embedding_dim)
    assert cosines(ours, reference).min() >= MIN_COSINE
    assert source.reference([]).shape == (0, source.embedding_dim)


def test_the_reference_takes_greyscale_and_transparent_images(
    sources: dict[str, ImageSource],
) -> None:
    rgba = photo(40, 30, seed=3)
    rgba.putalpha(128)
    embeddings = sources["vit"].reference([photo(40, 30, mode="L"), rgba])
    assert embeddings.shape == (2, 32)
    assert np.isfinite(embeddings).all()


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_the_module_exports_with_a_dynamic_batch_axis(
    family: str, sources: dict[str, ImageSource], tmp_path: Path
) -> None:
    source = sources[family]
    path = tmp_path / "image.onnx"
    with legacy_exporter_warnings_silenced(), torch.no_grad():
        torch.onnx.export(
            source.module,
            (torch.zeros(2, 3, 32, 32),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[source.input_name],
            output_names=[source.output_name],
            dynamic_axes={source.input_name: {0: "batch"}, source.output_name: {0: "batch"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        pixels = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        (actual,) = session.run([source.output_name], {source.input_name: pixels})
        with torch.no_grad():
            expected = source.module(torch.from_numpy(pixels)).numpy()
        assert actual.shape == (batch, source.embedding_dim)
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_convnext_warps_from_384_without_a_crop(encoded: list[bytes]) -> None:
    processor = transformers.ConvNextImageProcessorPil(size={"shortest_edge": 384})
    spec = image_preprocess_from_hf(processor_settings(processor))
    assert spec == ImagePreprocess(
        resize="exact",
        resize_height=384,
        resize_width=384,
        interpolation="bicubic",
        **HALF,
        **FLOOR,
    )
    theirs = np.asarray(processor(opened(encoded[:2]), return_tensors="np")["pixel_values"])
    assert np.abs(decoded(spec, encoded[:2]) - theirs).max() <= PIXEL_TOLERANCE


@pytest.mark.parametrize(
    "processor_class", ["DeiTImageProcessorPil", "CLIPImageProcessorPil", "BitImageProcessorPil"]
)
def test_class_defaults_are_read_from_the_processor(processor_class: str) -> None:
    """A preprocessor_config.json that leaves settings out gets its class's defaults."""
    processor = getattr(transformers, processor_class)()
    spec = image_preprocess_from_hf(processor_settings(processor))
    assert spec.output_size == (224, 224)
    assert spec.interpolation == "bicubic"
    if processor_class == "DeiTImageProcessorPil":
        assert (spec.resize, spec.resize_height, spec.crop_size) == ("exact", 256, 224)
    else:
        assert (spec.resize, spec.resize_short_side, spec.crop_size) == ("short_side", 224, 224)
        assert spec.mean == pytest.approx(OPENAI_MEAN)


def test_a_classification_checkpoint_embeds_with_its_base_model(
    tmp_path: Path, checkpoints: dict[str, Path], encoded: list[bytes]
) -> None:
    torch.manual_seed(1)
    config = transformers.ViTConfig.from_pretrained(checkpoints["vit"])
    classifier = transformers.ViTForImageClassification(config)
    classifier.save_pretrained(tmp_path / "cls")
    shutil.copy(checkpoints["vit"] / "preprocessor_config.json", tmp_path / "cls")
    source = load_hf_image_source(tmp_path / "cls")
    pixels = torch.from_numpy(decoded(source.preprocess, encoded))
    with torch.no_grad():
        expected = classifier.vit(pixel_values=pixels).last_hidden_state[:, 0]
        np.testing.assert_allclose(source.module(pixels).numpy(), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json", "model.safetensors"])
def test_a_missing_file_is_named(name: str, tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    directory = Path(shutil.copytree(checkpoints["vit"], tmp_path / "vit"))
    (directory / name).unlink()
    with pytest.raises(SourceError, match=name.replace(".", r"\.")):
        load_hf_image_source(directory)


def test_an_unknown_model_type_lists_the_supported_ones(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    directory = Path(shutil.copytree(checkpoints["vit"], tmp_path / "vit"))
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"model_type": "yolos"}))
    with pytest.raises(SourceError, match="'yolos'.*clip, clip_vision_model, convnext") as error:
        load_hf_image_source(directory)
    assert (error.value.field, error.value.value) == ("model_type", "yolos")


def test_missing_weights_are_refused_not_initialised(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    """A CLIPVisionModel checkpoint has no visual projection, so no image_embeds."""
    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig.from_pretrained(checkpoints["clip_vision"])
    transformers.CLIPVisionModel(config).save_pretrained(tmp_path / "clip")
    shutil.copy(checkpoints["clip_vision"] / "preprocessor_config.json", tmp_path / "clip")
    with pytest.raises(SourceError, match="visual_projection.weight"):
        load_hf_image_source(tmp_path / "clip")


def test_the_timm_loader_says_why_timm_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(SourceError, match="timm cannot be imported.*needs torchvision"):
        load_timm_image_source(tmp_path)
