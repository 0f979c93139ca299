"""The default recipe's real encoders through ``export-encoders``' Python API: parity with
their own pipelines, and the same embeddings as the default bundle's encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.bundle import load_encoder_bundle
from models.data.features import load_encoders
from models.encoders.encoder_parity import EXACT_MIN_COSINE, REDUCED_MIN_COSINE
from models.recipes.fashion_mnist.default_encoders import export_default_encoders
from tests.support.images import encode_image, photo
from tests.support.repo_paths import ROOT

DEFAULT = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("default-encoders") / "encoders"
    return out, export_default_encoders(out)


def test_both_encoders_meet_the_parity_targets(exported: tuple[Path, dict[str, Any]]) -> None:
    _, report = exported
    parity = report["parity"]
    image = parity["image_encoder"]["summary"]
    text = parity["text_encoder"]["summary"]
    assert image["exact"]["min_cosine"] >= EXACT_MIN_COSINE["fp32"]
    assert image["reduced"]["min_cosine"] >= REDUCED_MIN_COSINE["fp32"]
    assert text["exact"]["min_cosine"] >= EXACT_MIN_COSINE["fp32"]
    assert image["exact"]["inputs"] >= 10


@pytest.mark.skipif(
    not (DEFAULT / "manifest.json").is_file(), reason="the default bundle is not built"
)
def test_the_exported_encoders_embed_as_the_default_bundles(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = exported
    assert load_encoder_bundle(out).manifest.golden is not None
    ours, theirs = (load_encoders(path, threads=1).pipeline for path in (out, DEFAULT))
    image = encode_image(photo(300, 200))
    texts = ["a red running shoe", "Slim-fit wool trousers in charcoal grey"]
    np.testing.assert_allclose(
        ours.encode_images(np.stack([ours.decoder(image)])),
        theirs.encode_images(np.stack([theirs.decoder(image)])),
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        ours.encode_texts([ours.tokenizer.encode(t) for t in texts]),
        theirs.encode_texts([theirs.tokenizer.encode(t) for t in texts]),
        rtol=0,
        atol=1e-6,
    )
