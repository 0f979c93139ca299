"""``fusionserve export-encoders`` end to end on tiny checkpoints: export, parity, golden
inputs, ``train-head`` on the base bundle, and the trained bundle served over HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from app.bundle import load_bundle, load_encoder_bundle
from app.cli import main as cli_main
from app.errors import BundleError
from app.main import create_app
from models.encoders.encoder_parity import EXACT_MIN_COSINE
from models.encoders.export_encoders import ExportOptions, export_encoders, main
from models.encoders.hf_image_source import load_hf_image_source
from models.encoders.text_sources import load_text_source
from models.export.export_support import ExportError
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.synthetic_dataset import write_dataset
from tests.support.tiny_image_checkpoints import IMAGE_FAMILIES
from tests.support.tiny_text_checkpoints import (
    write_tiny_clip,
    write_tiny_sentence_transformer,
    write_tiny_siglip,
)
from tests.support.train_head_runs import train_bundle


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    image = IMAGE_FAMILIES["vit"](root / "vit")
    text = write_tiny_sentence_transformer(
        root / "st", pooling="mean", normalize=True, do_lower_case=True
    )
    return image, text


@pytest.fixture(scope="module")
def exported(
    checkpoints: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    image, text = checkpoints
    out = tmp_path_factory.mktemp("export") / "encoders"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["--image", str(image), "--text", str(text), "--out", str(out)])
    assert code == 0, buffer.getvalue()
    return out, buffer.getvalue()


def test_the_base_bundle_has_both_encoders_a_report_and_golden_inputs(
    exported: tuple[Path, str],
) -> None:
    out, stdout = exported
    manifest = load_encoder_bundle(out).manifest
    assert manifest.schema_version == 2
    assert manifest.golden is not None
    assert manifest.image_encoder.preprocess.resize == "exact"
    assert manifest.text_encoder.attention_mask == "attention_mask"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "manifest.json",
         "golden.json", "parity.json"]
    )  # fmt: skip
    report = json.loads((out / "parity.json").read_text())
    for encoder in ("image_encoder", "text_encoder"):
        exact = report["parity"][encoder]["summary"]["exact"]
        assert exact["met"] is True
        assert exact["min_cosine"] >= EXACT_MIN_COSINE["fp32"]
        assert report["graphs"][encoder]["min_cosine"] >= 0.99999
        assert f"{exact['min_cosine']}" in stdout
    image_summary = report["parity"]["image_encoder"]["summary"]
    assert image_summary["reduced"]["met"] is True
    departures = {row["input"]: row for row in report["parity"]["image_encoder"]["inputs"]}
    assert departures["JPEG with EXIF orientation 6"]["kind"] == "departure"
    assert "cosine" in departures["RGBA PNG, half transparent"]
    texts = {row["input"]: row for row in report["parity"]["text_encoder"]["inputs"]}
    assert "refused_by_the_service" in texts["empty after cleaning"]
    assert texts["mixed case"]["cosine"] >= EXACT_MIN_COSINE["fp32"]  # lower-casing baked in


def test_the_service_refuses_it_until_a_head_is_trained_then_serves_it(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = exported
    with pytest.raises(BundleError, match="train-head --base-bundle"):
        load_bundle(out)
    dataset = write_dataset(tmp_path / "data", {"train": 36, "val": 18})
    trained = train_bundle(
        out, dataset, tmp_path / "served", "--strategies", "concat", "--no-cache"
    )
    assert (trained.out / "golden.json").is_file()
    with TestClient(create_app(make_settings(trained.out))) as client:
        wait_ready(client)
        response = client.post(
            "/classify",
            files={"image": ("p.png", encode_image(photo(70, 50)), "image/png")},
            data={"text": "A Small RED cat"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] in load_bundle(trained.out).manifest.labels
    assert body["bundle"]["name"] == trained.report["manifest"]["name"]


def test_the_cli_runs_it_through_fusionserve(
    checkpoints: tuple[Path, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """In a child process (torch stays out of the CLI's); usage errors exit 2, a missing
    checkpoint file 1, naming it."""
    image, text = checkpoints
    assert cli_main(["export-encoders", "--image", str(image), "--text", str(tmp_path)]) == 2
    missing = tmp_path / "nothing"
    missing.mkdir()
    code = cli_main(
        ["export-encoders", "--image", str(missing), "--text", str(text), "--out",
         str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 1
    assert "config.json" in capfd.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_needs_force(
    checkpoints: tuple[Path, Path], exported: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    image, text = checkpoints
    out, _ = exported
    code = main(["--image", str(image), "--text", str(text), "--out", str(out)])
    assert code == 1
    assert "--force" in capsys.readouterr().err


def test_a_preprocessing_mismatch_fails_the_export_and_writes_nothing(
    checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    """The parity check is what catches a wrong transcription: the same ViT with a nearest
    resize instead of its processor's bilinear one."""
    image, text = checkpoints
    source = load_hf_image_source(image)
    wrong = dataclasses.replace(
        source, preprocess=source.preprocess.model_copy(update={"interpolation": "nearest"})
    )
    with pytest.raises(ExportError, match="image_encoder.*exact inputs") as caught:
        export_encoders(
            wrong,
            load_text_source(text),
            tmp_path / "out",
            ExportOptions("wrong", large_inputs=False),
        )
    assert "min cosine" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_fp16_graphs_keep_a_float32_interface_and_their_own_targets(
    checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    image, text = checkpoints
    report = export_encoders(
        load_hf_image_source(image),
        load_text_source(text),
        tmp_path / "fp16",
        ExportOptions("half", precision="fp16", large_inputs=False),
    )
    assert report["precision"] == "fp16"
    for encoder in ("image_encoder", "text_encoder"):
        exact = report["parity"][encoder]["summary"]["exact"]
        assert exact["met"] is True
        assert exact["target"] == EXACT_MIN_COSINE["fp16"]
    manifest = load_encoder_bundle(tmp_path / "fp16").manifest

    graph = onnx.load(str(tmp_path / "fp16" / manifest.image_encoder.file)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer), (
        "the weights are float16"
    )
    assert np.isfinite(report["graphs"]["image_encoder"]["min_cosine"])


def _text_kinds() -> dict[str, Callable[[Path], Path]]:
    kinds: dict[str, Callable[[Path], Path]] = {
        f"st-{mode}": functools.partial(write_tiny_sentence_transformer, pooling=mode)
        for mode in ("cls", "lasttoken", "max", "mean_sqrt_len_tokens", "weightedmean")
    }
    kinds["clip-text"] = write_tiny_clip
    kinds["siglip-text"] = write_tiny_siglip
    return kinds


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_every_image_family_exports_with_parity(
    family: str, checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    _, text = checkpoints
    image = load_hf_image_source(IMAGE_FAMILIES[family](tmp_path / family))
    report = export_encoders(
        image, load_text_source(text), tmp_path / "out", ExportOptions(family, large_inputs=False)
    )
    summary = report["parity"]["image_encoder"]["summary"]
    assert summary["exact"]["met"] is True
    assert summary["exact"]["inputs"] >= 10
    assert load_encoder_bundle(tmp_path / "out").manifest.image_encoder.embedding_dim > 0


@pytest.mark.parametrize("kind", sorted(_text_kinds()))
def test_every_text_kind_exports_with_parity(
    kind: str, checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    image, _ = checkpoints
    text = load_text_source(_text_kinds()[kind](tmp_path / kind))
    report = export_encoders(
        load_hf_image_source(image), text, tmp_path / "out", ExportOptions(kind, large_inputs=False)
    )
    summary = report["parity"]["text_encoder"]["summary"]
    assert summary["exact"]["met"] is True
    assert summary["exact"]["inputs"] >= 9
    manifest = load_encoder_bundle(tmp_path / "out").manifest.text_encoder
    assert (manifest.padding == "max_length") == (kind == "siglip-text")
    assert (manifest.attention_mask is None) == (kind == "siglip-text")


def test_clip_and_siglip_towers_train_and_serve(tmp_path: Path) -> None:
    """A contrastive pair's towers (a SigLIP image tower, a CLIP text tower) through export,
    train-head and HTTP."""
    out = tmp_path / "encoders"
    export_encoders(
        load_hf_image_source(IMAGE_FAMILIES["siglip"](tmp_path / "siglip")),
        load_text_source(write_tiny_clip(tmp_path / "clip")),
        out,
        ExportOptions("towers", large_inputs=False),
    )
    dataset = write_dataset(tmp_path / "data", {"train": 36, "val": 18})
    trained = train_bundle(out, dataset, tmp_path / "served", "--strategies", "mean", "--no-cache")
    with TestClient(create_app(make_settings(trained.out))) as client:
        wait_ready(client)
        response = client.post(
            "/classify",
            files={"image": ("p.jpg", encode_image(photo(64, 90), "JPEG"), "image/jpeg")},
            data={"text": "a small red cat"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["label"] in load_bundle(trained.out).manifest.labels
