"""``fusionserve fp16-bundle`` on the tiny bundle and a generated dataset, served for real.

On this x86 CPU provider the float16 models load and run, but ONNX Runtime runs most of their
arithmetic in float32 between inserted casts (the report counts it): here the tests check the
converted files' structure, that the service loads and serves them, and that their answers stay
within float16 rounding of the fp32 bundle's; the ``cuda`` test checks float16 arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.bundle.loader import load_bundle, sha256_file
from app.cli import main as cli_main
from app.main import create_app
from models.data.features import load_engine
from models.precision import fp16_bundle
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.synthetic_dataset import write_dataset
from tests.support.tiny_bundle import add_golden, make_tiny_bundle_with_head, write_manifest

SPLITS = {"train": 8, "val": 24, "test": 12}
MODELS = ("image.onnx", "text.onnx", "head.onnx")
# float16 keeps 11 significant bits: weights move by at most 2**-11 relative, and the tiny
# models add a handful of such errors, so a probability moves by well under 0.005.
PROBABILITY_TOLERANCE = 5e-3


@dataclass(frozen=True)
class Converted:
    source: Path
    dataset: Path
    out: Path
    report: dict[str, Any]


def _convert(*args: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = fp16_bundle.main(list(args))
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    root = tmp_path_factory.mktemp("fp16")
    source = root / "fp32"
    make_tiny_bundle_with_head(source, presence=True, temperature=1.5)
    dataset = write_dataset(root / "data", SPLITS)
    out = root / "fp16"
    code, stdout = _convert(
        str(source), "--out", str(out), "--check-data", str(dataset), "--check-rows", "16",
        "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 0, stdout
    assert "bundle tiny-test-bundle-fp16 0.0.1" in stdout
    report = json.loads((out / fp16_bundle.REPORT_FILE).read_text())
    return Converted(source, dataset, out, report)


def test_manifest_is_rewritten_valid_and_keeps_the_interface(converted: Converted) -> None:
    bundle = load_bundle(converted.out)  # verifies every sha256
    source = load_bundle(converted.source).manifest
    manifest = bundle.manifest
    assert manifest.name == f"{source.name}-fp16"
    assert manifest.version == source.version
    assert manifest.labels == source.labels
    for ref in manifest.files().values():
        assert ref.sha256 == sha256_file(converted.out / ref.file)
    for component in ("image_encoder", "text_encoder", "fusion_head"):
        before, after = getattr(source, component), getattr(manifest, component)
        assert after.sha256 != before.sha256, component  # a new file...
        # ...behind the same interface: names, dims, preprocessing, presence inputs.
        assert after.model_copy(update={"sha256": before.sha256}) == before
    assert manifest.model_card == fp16_bundle.MODEL_CARD_FILE
    card = (converted.out / manifest.model_card).read_text()
    assert card.startswith(f"# {manifest.name} {manifest.version}\n")
    assert "| Fusion head | float16 |" in card


def _elem_types(values: Any) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


@pytest.mark.parametrize("name", MODELS)
def test_weights_are_float16_behind_float32_inputs_and_outputs(
    converted: Converted, name: str
) -> None:
    before = onnx.load(str(converted.source / name))
    after = onnx.load(str(converted.out / name))
    onnx.checker.check_model(after)
    assert _elem_types(after.graph.input) == _elem_types(before.graph.input)
    assert _elem_types(after.graph.output) == _elem_types(before.graph.output)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    weights = {t.name: t.data_type for t in after.graph.initializer if t.data_type in floats}
    assert weights, "the model has float weights"
    assert set(weights.values()) == {TensorProto.FLOAT16}
    for t in before.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            new = next(n for n in after.graph.initializer if n.name == t.name)
            expected = numpy_helper.to_array(t).astype(np.float16)
            np.testing.assert_array_equal(numpy_helper.to_array(new), expected)
    # A Cast to float16 after each float input, a Cast to float32 before each output.
    casts = [n for n in after.graph.node if n.op_type == "Cast"]
    to = {n.input[0]: n.attribute[0].i for n in casts}
    to |= {n.output[0]: n.attribute[0].i for n in casts}
    for value in after.graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            assert to[value.name] == TensorProto.FLOAT16, value.name
    for value in after.graph.output:
        assert to[value.name] == TensorProto.FLOAT, value.name
    component = {"image.onnx": "image_encoder", "text.onnx": "text_encoder"}.get(name)
    entry = converted.report["models"][component or "fusion_head"]
    assert entry["precision"] == "float16"
    assert entry["weights_after"]["float32"] == 0
    assert entry["weights_after"]["float16"] == entry["weights_before"]["float32"] > 0


def _classify(client: TestClient, image: bytes, text: str | None) -> dict[str, float]:
    data = {"top_k": "3"} | ({} if text is None else {"text": text})
    response = client.post(
        "/classify", files={"image": ("item.png", image, "image/png")}, data=data
    )
    assert response.status_code == 200, response.text
    return {p["label"]: p["probability"] for p in response.json()["predictions"]}


def test_service_serves_it_within_float16_rounding_of_fp32(converted: Converted) -> None:
    inputs = [
        (encode_image(photo(70, 50, seed=seed)), text)
        for seed, text in enumerate(["a red cat", "the big dog", "blue bird photo", None])
    ]
    answers = []
    for bundle in (converted.source, converted.out):
        with TestClient(create_app(make_settings(bundle))) as client:
            wait_ready(client)
            info = client.get("/info").json()
            answers.append((info["bundle"]["name"], [_classify(client, *i) for i in inputs]))
    (fp32_name, fp32), (fp16_name, fp16) = answers
    assert fp16_name == f"{fp32_name}-fp16"
    differences = [
        abs(after[label] - p) for before, after in zip(fp32, fp16, strict=True)
        for label, p in before.items()
    ]  # fmt: skip
    assert 0 < max(differences) < PROBABILITY_TOLERANCE  # changed, but only by rounding


def test_encoders_match_fp32_features_within_float16_precision(converted: Converted) -> None:
    source, fp16 = load_engine(converted.source, threads=1), load_engine(converted.out, threads=1)
    pixels = np.stack(
        [source.pipeline.decoder(encode_image(photo(60, 40, seed=s))) for s in range(4)]
    )
    before, after = source.pipeline.encode_images(pixels), fp16.pipeline.encode_images(pixels)
    assert after.dtype == np.float32
    np.testing.assert_allclose(after, before, rtol=0, atol=5e-3 * np.abs(before).max())
    tokens = [source.pipeline.tokenizer.encode(t) for t in ("a small red cat", "the dog")]
    text_before = source.pipeline.encode_texts(tokens)
    text_after = fp16.pipeline.encode_texts(tokens)
    np.testing.assert_allclose(text_after, text_before, rtol=0, atol=5e-3)


def test_report_says_what_ran_where_and_compares_on_val_rows(converted: Converted) -> None:
    report = converted.report
    assert report["device"]["requested"] == "cpu"
    for component in ("image_encoder", "text_encoder", "fusion_head"):
        assert report["device"]["providers"][component][0] == "CPUExecutionProvider"
        kernels = report["kernels"][component]
        assert kernels["provider"] == "CPUExecutionProvider"
        assert sum(kernels["by_input_precision"].values()) == kernels["kernels"] > 0
    # The x86 CPU provider has no float16 MatMul: ONNX Runtime runs it in float32.
    assert report["kernels"]["image_encoder"]["float32_op_types"]["MatMul"] == 1
    check = report["check"]
    assert (check["source"], check["rows"]) == ("val", 16)
    assert check["image_cosine"]["min"] > 0.9999
    assert check["text_cosine"]["min"] > 0.9999
    assert check["fused_top1_agreement"] == 1.0
    assert 0 < check["fused_max_abs_probability_diff"] < PROBABILITY_TOLERANCE


def _float64_head(root: Path) -> None:
    """Replace the bundle's head by one that computes in float64 (as the default bundle's
    does): float32 in, Cast to double, MatMul, Cast back."""
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(12, 3))
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["image_features", "text_features"], ["both"], axis=1),
            helper.make_node("Cast", ["both"], ["both64"], to=TensorProto.DOUBLE),
            helper.make_node("MatMul", ["both64", "w"], ["raw"]),
            helper.make_node("Cast", ["raw"], ["logits"], to=TensorProto.FLOAT),
        ],
        "float64_head",
        [
            helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("text_features", TensorProto.FLOAT, ["batch", 4]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "head.onnx"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["fusion_head"] = {
        "file": "head.onnx",
        "sha256": sha256_file(root / "head.onnx"),
        "image_input": "image_features",
        "text_input": "text_features",
        "output": "logits",
    }
    write_manifest(root, manifest)


def test_a_model_without_float32_weights_is_kept_as_it_is(tmp_path: Path) -> None:
    source = tmp_path / "fp32"
    make_tiny_bundle_with_head(source)
    _float64_head(source)
    code, stdout = _convert(str(source), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert code == 0, stdout
    assert "fusion_head: unchanged (no float32 weights)" in stdout
    out = load_bundle(tmp_path / "out").manifest
    assert out.fusion_head == load_bundle(source).manifest.fusion_head
    assert (tmp_path / "out" / "head.onnx").read_bytes() == (source / "head.onnx").read_bytes()
    report = json.loads((tmp_path / "out" / fp16_bundle.REPORT_FILE).read_text())
    assert set(report["kernels"]) == {"image_encoder", "text_encoder"}
    assert report["check"] is None


def test_golden_inputs_are_embedded_again_by_the_float16_models(tmp_path: Path) -> None:
    source = tmp_path / "fp32"
    make_tiny_bundle_with_head(source)
    add_golden(source)
    out = tmp_path / "fp16"
    code, stdout = _convert(str(source), "--out", str(out), "--device", "cpu")
    assert code == 0, stdout
    golden = load_bundle(out).manifest.golden  # verifies its sha256
    assert golden is not None
    assert golden.min_cosine == 0.9999
    source_golden = json.loads((source / "golden.json").read_text())
    out_golden = json.loads((out / golden.file).read_text())
    assert [i["name"] for i in out_golden["images"]] == [i["name"] for i in source_golden["images"]]
    assert out_golden["images"] != source_golden["images"]  # float16 embeddings


def test_keep_op_leaves_those_nodes_in_float32(converted: Converted, tmp_path: Path) -> None:
    out = tmp_path / "kept"
    code, _ = _convert(
        str(converted.source), "--out", str(out), "--keep-op", "MatMul", "--device", "cpu"
    )
    assert code == 0
    image = onnx.load(str(out / "image.onnx"))
    assert {t.name: t.data_type for t in image.graph.initializer}["w"] == TensorProto.FLOAT
    report = json.loads((out / fp16_bundle.REPORT_FILE).read_text())
    assert report["models"]["image_encoder"]["float32_op_types"] == ["MatMul"]
    load_bundle(out)


def test_same_source_same_bytes(converted: Converted, tmp_path: Path) -> None:
    out = tmp_path / "again"
    code, _ = _convert(str(converted.source), "--out", str(out), "--device", "cpu")
    assert code == 0
    for name in (*MODELS, "manifest.json"):
        assert (out / name).read_bytes() == (converted.out / name).read_bytes(), name


def test_cli_passes_fp16_bundle_through(capfd: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["fp16-bundle", "--help"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("usage: fusionserve fp16-bundle")
    for option in ("--out", "--check-data", "--check-rows", "--device", "--keep-op"):
        assert option in out


def test_missing_source_exits_2_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["fp16-bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert capfd.readouterr().err.strip().splitlines() == [
        f"fp16-bundle: SRC {tmp_path / 'nope'} is not a bundle directory"
    ]
    assert not (tmp_path / "out").exists()


def test_bad_bundle_options_and_output_exit_2(
    converted: Converted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    cases = [
        ([str(empty), "--out", str(out)], "manifest"),
        ([str(converted.source), "--out", str(converted.out)], "is not empty; pass --force"),
        ([str(converted.source), "--out", str(out), "--keep-node", "nope"], "no node named"),
        ([str(converted.source), "--out", str(out), "--check-rows", "0"], "--check-rows"),
        (
            [str(converted.source), "--out", str(out), "--check-data", str(tmp_path / "no.csv")],
            "no.csv",
        ),
    ]
    for args, message in cases:
        assert fp16_bundle.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("fp16-bundle: "), err
        assert message in err, err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()


@pytest.mark.cuda
def test_on_cuda_the_arithmetic_is_float16_and_close_to_fp32(
    converted: Converted, tmp_path: Path
) -> None:
    out = tmp_path / "cuda"
    code, stdout = _convert(
        str(converted.source), "--out", str(out), "--check-data", str(converted.dataset),
        "--check-rows", "16", "--device", "cuda", "--no-progress",
    )  # fmt: skip
    assert code == 0, stdout
    report = json.loads((out / fp16_bundle.REPORT_FILE).read_text())
    for kernels in report["kernels"].values():
        assert kernels["provider"] == "CUDAExecutionProvider"
        assert kernels["by_input_precision"].get("float16", 0) > 0
    assert report["kernels"]["image_encoder"].get("float32_op_types", {}).get("MatMul") is None
    check = report["check"]
    assert check["fused_top1_agreement"] == 1.0
    assert check["fused_max_abs_probability_diff"] < PROBABILITY_TOLERANCE
