"""The resize-and-crop graphs the GPU decoding path runs are committed in app/: they must be
what ``models.export.resize_graph`` builds (rewrite them with
``python -m models.export.resize_graph``), and they must resize as Pillow does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from models.export.resize_graph import MODES, graph_bytes, graph_path, write_graphs
from tests.support.images import photo

PILLOW = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@pytest.mark.parametrize("interpolation", list(MODES))
def test_committed_graphs_are_current(interpolation: str) -> None:
    committed = graph_path(interpolation)
    assert committed.read_bytes() == graph_bytes(interpolation), (
        f"{committed} is stale: run python -m models.export.resize_graph"
    )


def test_write_graphs_writes_one_file_per_interpolation(tmp_path: Path) -> None:
    written = write_graphs(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"resize_crop_{name}.onnx" for name in MODES)


@pytest.mark.parametrize("interpolation", list(MODES))
@pytest.mark.parametrize("size", [(60, 80), (300, 420)])  # reduce, enlarge (from 150x200)
def test_graphs_resize_crop_and_normalise_as_pillow_does(
    interpolation: str, size: tuple[int, int]
) -> None:
    source = photo(200, 150, seed=1)
    session = ort.InferenceSession(graph_bytes(interpolation), providers=["CPUExecutionProvider"])
    height, width = size
    top, left = 5, 7
    mean = np.asarray([120.0, 125.0, 130.0], dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray([60.0, 64.0, 70.0], dtype=np.float32).reshape(3, 1, 1)
    (pixels,) = session.run(
        None,
        {
            "image": np.asarray(source),
            "sizes": np.asarray(size, dtype=np.int64),
            "starts": np.asarray([top, left], dtype=np.int64),
            "ends": np.asarray([height - 3, width - 2], dtype=np.int64),
            "mean": mean,
            "std": std,
        },
    )
    resized = source.resize((width, height), PILLOW[interpolation])
    cropped = np.asarray(resized, dtype=np.float32)[top : height - 3, left : width - 2]
    expected = (cropped.transpose(2, 0, 1) - mean) / std
    assert pixels.shape == expected.shape
    difference = np.abs(pixels - expected) * std  # in 8-bit levels
    if interpolation == "nearest":
        # The same pixels but where a sample falls on a boundary: Pillow computes positions
        # in double precision, ONNX Runtime in float (a few columns at scale 2.1).
        assert float((difference.max(axis=0) > 1e-3).mean()) < 0.025
    else:  # Pillow rounds to 8 bits between its two passes; the graph stays in float
        assert float(difference.mean()) < 0.5
        assert float(np.quantile(difference, 0.999)) < 3.0
