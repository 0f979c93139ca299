"""Fashion-MNIST: labels and a dependency-free reader for the original idx (gzip) files.

Fashion-MNIST (Zalando Research, MIT licence) ships as four gzip-compressed idx files; Debian's
``dataset-fashion-mnist`` package installs them under ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

# Index order of the dataset's label files.
LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

Split = Literal["train", "t10k"]


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    header = np.frombuffer(raw, dtype=">u4", count=1)[0]
    if header != magic:
        raise ValueError(f"{path}: idx magic {header:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def load_split(split: Split, data_dir: Path = DEFAULT_DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) of one split."""
    images_path = data_dir / f"{split}-images-idx3-ubyte.gz"
    labels_path = data_dir / f"{split}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; install it with `apt-get install dataset-fashion-mnist`"
            )
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels) or labels.max() >= len(LABELS):
        raise ValueError(f"{data_dir}: {split} images and labels do not match")
    return images, labels


def png_bytes(image: np.ndarray) -> bytes:
    """Encode one 28x28 greyscale image losslessly, as a client would upload it."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
