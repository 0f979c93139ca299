from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.cli import main
from tests.support.images import encode_image, photo


def test_predict_agrees_with_http(
    tiny_bundle_dir: Path,
    tmp_path: Path,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = tmp_path / "item.png"
    image.write_bytes(encode_image(photo(90, 70, seed=3), "PNG"))
    code = main(
        [
            "predict",
            str(image),
            "--text",
            "a red bird",
            "--bundle",
            str(tiny_bundle_dir),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    http = client.post(
        "/classify",
        files={"image": ("item.png", image.read_bytes(), "image/png")},
        data={"text": "a red bird"},
    ).json()
    assert printed["label"] == http["label"]
    assert [p["label"] for p in printed["predictions"]] == [p["label"] for p in http["predictions"]]
    for mine, theirs in zip(printed["predictions"], http["predictions"], strict=True):
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)


def test_predict_reports_bad_input(
    tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"not an image")
    code = main(["predict", str(bogus), "--text", "a cat", "--bundle", str(tiny_bundle_dir)])
    assert code == 2
    assert "unsupported_image_format" in capsys.readouterr().err


def test_predict_reports_bad_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "item.png"
    image.write_bytes(encode_image(photo(), "PNG"))
    code = main(["predict", str(image), "--text", "x", "--bundle", str(tmp_path)])
    assert code == 1
    assert "manifest.json not found" in capsys.readouterr().err


def test_serve_takes_one_bundle_or_several() -> None:
    from app.cli import _parser, _settings

    one = _settings(_parser().parse_args(["serve", "--bundle", "/m/a"]))
    assert one.bundle_dirs() == [Path("/m/a")]
    several = _settings(_parser().parse_args(["serve", "--bundle", "/m/a", "--bundle", "/m/b"]))
    assert several.bundle_dirs() == [Path("/m/a"), Path("/m/b")]
