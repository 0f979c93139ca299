"""Write the resize-and-crop graphs that the GPU image decoding path runs in ONNX Runtime.

``app.preprocess.gpu_jpeg`` decodes JPEGs on the GPU (nvImageCodec) and must then resize,
centre-crop and normalise them there, as ``app.preprocess.image`` does on the CPU with Pillow.
The service does not depend on ``onnx``, so the graphs are built here and committed (a few
hundred bytes each, no weights): ``python -m models.export.resize_graph`` rewrites them, and a
test fails when the committed files differ from what this module builds.

Each graph: ``image`` uint8 [H, W, C] (as decoders give it) -> planar float [1, C, H, W] ->
``Resize`` to ``sizes`` [2] (axes H, W; antialiased like Pillow when reducing, pixel centres
as Pillow places them) -> clamped to 0..255 as Pillow does -> ``Slice`` from ``starts`` to
``ends`` [2] (H, W) -> ``(x - mean) / std`` ([C, 1, 1] each) -> ``pixels`` float32
[C, crop, crop]. The planar NCHW form is the one ONNX Runtime's antialiased Resize supports
for every mode.
Pillow's bicubic filter is Keys' with a = -0.5, so the cubic graph uses the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

GRAPH_DIR = Path(__file__).resolve().parents[2] / "app" / "preprocess" / "graphs"
OPSET = 18  # Resize's antialias and axes attributes
MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}


def resize_graph(interpolation: str) -> onnx.ModelProto:
    """The graph for one manifest interpolation (``nearest``, ``bilinear``, ``bicubic``)."""
    mode = MODES[interpolation]
    resize = helper.make_node(
        "Resize",
        ["batched", "", "", "sizes"],
        ["resized"],
        mode=mode,
        axes=[2, 3],
        antialias=0 if mode == "nearest" else 1,
        # Pillow samples at pixel centres; for nearest, floor((x + 0.5) / scale)
        coordinate_transformation_mode="tf_half_pixel_for_nn"
        if mode == "nearest"
        else "half_pixel",
        nearest_mode="floor",
        cubic_coeff_a=-0.5,
    )
    nodes = [
        helper.make_node("Transpose", ["image"], ["planar"], perm=[2, 0, 1]),
        helper.make_node("Cast", ["planar"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["batch_axis"], value_ints=[0]),
        helper.make_node("Unsqueeze", ["as_float", "batch_axis"], ["batched"]),
        resize,
        # Pillow clamps to 0..255 (cubic overshoots at edges)
        helper.make_node("Constant", [], ["low"], value_float=0.0),
        helper.make_node("Constant", [], ["high"], value_float=255.0),
        helper.make_node("Clip", ["resized", "low", "high"], ["clamped"]),
        helper.make_node("Constant", [], ["crop_axes"], value_ints=[2, 3]),
        helper.make_node("Slice", ["clamped", "starts", "ends", "crop_axes"], ["cropped"]),
        helper.make_node("Squeeze", ["cropped", "batch_axis"], ["chw"]),
        helper.make_node("Sub", ["chw", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["pixels"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"fusionserve_resize_crop_{interpolation}",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["height", "width", "c"]),
            helper.make_tensor_value_info("sizes", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("starts", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("ends", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["c", 1, 1]),
            helper.make_tensor_value_info("std", TensorProto.FLOAT, ["c", 1, 1]),
        ],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["c", "crop_h", "crop_w"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="fusionserve",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def graph_bytes(interpolation: str) -> bytes:
    data: bytes = resize_graph(interpolation).SerializeToString(deterministic=True)
    return data


def graph_path(interpolation: str, root: Path = GRAPH_DIR) -> Path:
    return root / f"resize_crop_{interpolation}.onnx"


def write_graphs(root: Path = GRAPH_DIR) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for interpolation in MODES:
        path = graph_path(interpolation, root)
        path.write_bytes(graph_bytes(interpolation))
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=GRAPH_DIR)
    args = parser.parse_args()
    for path in write_graphs(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
