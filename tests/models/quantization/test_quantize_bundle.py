"""``fusionserve quantize-bundle`` on the tiny bundle and a generated dataset, served for real."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.bundle.loader import load_bundle, sha256_file
from app.cli import main as cli_main
from app.main import create_app
from models.data.dataset import load_dataset
from models.data.features import load_engine
from models.quantization import calibration, quantize_bundle
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.synthetic_dataset import write_dataset
from tests.support.tiny_bundle import add_golden, make_tiny_bundle_with_head

SPLITS = {"train": 48, "val": 24, "test": 12}


@dataclass(frozen=True)
class Quantized:
    source: Path
    dataset: Path
    out: Path
    report: dict[str, Any]


def _quantize(*args: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = quantize_bundle.main(list(args))
    return code, buffer.getvalue()


def _args(source: Path, out: Path, dataset: Path | None, *extra: str) -> list[str]:
    data = [] if dataset is None else ["--calibration-data", str(dataset)]
    return [str(source), str(out), *data, "--samples", "24", "--check-samples", "16", *extra]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Quantized:
    root = tmp_path_factory.mktemp("quantize")
    source = root / "fp32"
    make_tiny_bundle_with_head(source, presence=True, temperature=1.5)
    dataset = write_dataset(root / "data", SPLITS)
    out = root / "int8"
    code, _ = _quantize(*_args(source, out, dataset, "--no-progress"))
    assert code == 0
    report = json.loads((out / quantize_bundle.REPORT_FILE).read_text())
    return Quantized(source, dataset, out, report)


def test_bundle_has_a_distinct_name_and_correct_hashes(quantized: Quantized) -> None:
    bundle = load_bundle(quantized.out)  # verifies every sha256
    source = load_bundle(quantized.source).manifest
    manifest = bundle.manifest
    assert manifest.name == f"{source.name}-int8"
    assert manifest.version == source.version
    for ref in manifest.files().values():
        assert ref.sha256 == sha256_file(quantized.out / ref.file)
    # The encoders are new files; the head, the tokenizer and the preprocessing are the source's.
    assert manifest.image_encoder.sha256 != source.image_encoder.sha256
    assert manifest.text_encoder.sha256 != source.text_encoder.sha256
    assert manifest.fusion_head == source.fusion_head
    assert manifest.text_encoder.tokenizer == source.text_encoder.tokenizer
    assert manifest.image_encoder.preprocess == source.image_encoder.preprocess
    assert manifest.model_card is not None
    assert (quantized.out / manifest.model_card).read_text().startswith(f"# {manifest.name} ")


def test_encoders_really_are_quantised(quantized: Quantized) -> None:
    import onnx

    image = onnx.load(str(quantized.out / "image.onnx"))
    text = onnx.load(str(quantized.out / "text.onnx"))
    image_ops = {node.op_type for node in image.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= image_ops  # static QDQ
    int8 = [t for t in image.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8, "the image encoder's weights are int8"
    # Pooling is left in float: the embedding itself is never quantised.
    assert quantized.report["image_encoder"]["float_nodes"] == [
        n.name for n in image.graph.node if n.op_type == "GlobalAveragePool"
    ]
    # Dynamic: the embedding table is stored in 8 bits, dequantised when gathered.
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    assert any(t.data_type in eight_bit for t in text.graph.initializer)
    assert "DequantizeLinear" in {node.op_type for node in text.graph.node}


def _classify(client: TestClient, image: bytes, text: str) -> dict[str, float]:
    response = client.post(
        "/classify",
        files={"image": ("item.png", image, "image/png")},
        data={"text": text, "top_k": "3"},
    )
    assert response.status_code == 200, response.text
    return {p["label"]: p["probability"] for p in response.json()["predictions"]}


def test_service_serves_it_close_to_the_fp32_bundle(quantized: Quantized) -> None:
    answers = []
    for bundle in (quantized.source, quantized.out):
        with TestClient(create_app(make_settings(bundle))) as client:
            wait_ready(client)
            name = client.get("/info").json()["bundle"]["name"]
            rows = [
                _classify(client, encode_image(photo(70, 50, seed=seed)), text)
                for seed, text in enumerate(["a red cat", "the big dog", "blue bird photo"])
            ]
            answers.append((name, rows))
    (fp32_name, fp32), (int8_name, int8) = answers
    assert int8_name == f"{fp32_name}-int8"
    for before, after in zip(fp32, int8, strict=True):
        assert max(before, key=before.__getitem__) == max(after, key=after.__getitem__)
        for label, p in before.items():
            assert after[label] == pytest.approx(p, abs=0.03)


def test_check_compares_with_the_source_on_validation_rows(quantized: Quantized) -> None:
    check = quantized.report["check"]
    assert check["source"] == "val"
    assert check["rows"] == 16
    assert 0.99 < check["image_cosine"]["mean"] <= 1.0
    assert 0.99 < check["text_cosine"]["mean"] <= 1.0
    assert check["fused_top1_agreement"] >= 0.9
    assert quantized.report["calibration"]["rows"] == 24
    assert quantized.report["calibration"]["split"] == "train"


def test_calibration_inputs_are_the_services_own(quantized: Quantized) -> None:
    engine = load_engine(quantized.source, threads=1)
    pipeline = engine.pipeline
    dataset = load_dataset(quantized.dataset)
    rows = dataset.split("train")[:5]
    images = calibration.image_feeds(pipeline, rows, batch=4)
    texts = calibration.text_feeds(engine, rows, batch=4)
    assert [len(feed["pixel_values"]) for feed in images] == [4, 1]
    prepared = [pipeline.prepare(row.image.read_bytes(), row.text) for row in rows]
    pixels = np.concatenate([feed["pixel_values"] for feed in images])
    np.testing.assert_array_equal(pixels, np.stack([item.pixels for item in prepared]))
    for feed, items in ((texts[0], prepared[:4]), (texts[1], prepared[4:])):
        padded = pipeline.tokenizer.pad([item.token_ids for item in items])
        np.testing.assert_array_equal(feed["input_ids"], padded.input_ids)
        np.testing.assert_array_equal(feed["attention_mask"], padded.attention_mask)
    reader = calibration.FeedReader(images)
    assert [reader.get_next() is feed for feed in images] == [True, True]
    assert reader.get_next() is None


def test_choose_never_uses_test_rows_and_keeps_check_rows_apart(quantized: Quantized) -> None:
    dataset = load_dataset(quantized.dataset)
    everything = calibration.choose(dataset, "all", samples=1000, check_samples=10, seed=0)
    assert all(row.split != "test" for row in everything.calibration + everything.check)
    own = calibration.choose(dataset, "val", samples=10, check_samples=50, seed=3)
    assert {row.line for row in own.calibration}.isdisjoint(row.line for row in own.check)
    assert len(own.check) == SPLITS["val"] - 10
    again = calibration.choose(dataset, "val", samples=10, check_samples=50, seed=3)
    assert again == own


def test_same_seed_same_bytes(quantized: Quantized, tmp_path: Path) -> None:
    out = tmp_path / "again"
    code, _ = _quantize(*_args(quantized.source, out, quantized.dataset, "--no-progress"))
    assert code == 0
    for name in ("image.onnx", "text.onnx", "manifest.json"):
        assert (out / name).read_bytes() == (quantized.out / name).read_bytes()


def test_dynamic_only_needs_no_data_and_mode_none_keeps_the_encoder(
    quantized: Quantized, tmp_path: Path
) -> None:
    out = tmp_path / "text-only"
    code, stdout = _quantize(
        str(quantized.source), str(out), "--image-mode", "none", "--name", "pets-q"
    )
    assert code == 0, stdout
    manifest = load_bundle(out).manifest
    source = load_bundle(quantized.source).manifest
    assert manifest.name == "pets-q"
    assert manifest.image_encoder.sha256 == source.image_encoder.sha256
    assert manifest.text_encoder.sha256 != source.text_encoder.sha256
    report = json.loads((out / quantize_bundle.REPORT_FILE).read_text())
    assert report["check"] is None
    assert report["calibration"] is None


def test_golden_inputs_are_embedded_again_by_the_quantised_encoders(tmp_path: Path) -> None:
    source = tmp_path / "fp32"
    make_tiny_bundle_with_head(source)
    entry = add_golden(source, min_cosine=0.995)
    out = tmp_path / "int8"
    code, stdout = _quantize(str(source), str(out), "--image-mode", "none")
    assert code == 0, stdout
    golden = load_bundle(out).manifest.golden  # verifies its sha256
    assert golden is not None
    assert golden.min_cosine == entry["min_cosine"]
    source_golden = json.loads((source / "golden.json").read_text())
    out_golden = json.loads((out / golden.file).read_text())
    assert [t["text"] for t in out_golden["texts"]] == [t["text"] for t in source_golden["texts"]]
    assert out_golden["images"] == source_golden["images"]  # the image encoder was kept
    assert out_golden["texts"] != source_golden["texts"]  # the text encoder is int8
    assert load_engine(out).bundle.manifest.golden == golden  # and they check


def test_cli_missing_source_exits_2_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["quantize-bundle", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert code == 2
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [
        f"quantize-bundle: SRC {tmp_path / 'nope'} is not a bundle directory"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "needs --calibration-data"),
        (("--image-mode", "none", "--text-mode", "none"), "nothing to do"),
    ],
)
def test_option_errors_exit_2(
    quantized: Quantized,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    code = quantize_bundle.main([str(quantized.source), str(tmp_path / "out"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_and_unknown_nodes(
    quantized: Quantized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(quantized.source), str(quantized.out), "--image-mode", "none"]
    assert quantize_bundle.main(args) == 2
    assert "is not empty; pass --force" in capsys.readouterr().err
    out = tmp_path / "out"
    args = [str(quantized.source), str(out), "--image-mode", "none", "--exclude-node", "nope"]
    assert quantize_bundle.main(args) == 2
    assert "no node named 'nope'" in capsys.readouterr().err
    assert not out.exists()
