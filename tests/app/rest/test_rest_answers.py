"""The REST adapter's answer to a classified item: ranked labels, top_k, explanation, timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.bundle.loader import read_manifest
from app.core.classification import ClassifiedItem, Timings
from app.rest.rest_answers import DEFAULT_EXPLAINED, classify_json, classify_response
from tests.support.tiny_bundle import LABELS, make_tiny_multilabel_bundle

TIMINGS = Timings(preprocess_s=0.0012345, inference_s=0.002)


def test_labels_are_ranked_and_cut_to_top_k(tiny_bundle_dir: Path) -> None:
    manifest = read_manifest(tiny_bundle_dir)[1]
    # Ties keep label order (stable), as the OIP output's argmax does.
    item = ClassifiedItem(np.array([0.25, 0.5, 0.25], np.float32), "text", TIMINGS)
    response = classify_response(item, manifest, top_k=None)
    assert [p.label for p in response.predictions] == [LABELS[1], LABELS[0], LABELS[2]]
    assert (response.label, response.probability) == (LABELS[1], 0.5)
    assert response.missing_modality == "text"
    assert response.explanation is None
    assert (response.bundle.name, response.bundle.version) == (manifest.name, manifest.version)
    assert (response.timing.preprocess_ms, response.timing.inference_ms) == (1.234, 2.0)
    assert response.timing.total_ms == pytest.approx(3.234, abs=1e-3)
    cut = classify_response(item, manifest, top_k=2)
    assert [p.label for p in cut.predictions] == [LABELS[1], LABELS[0]]


def test_an_explained_item_gets_each_modalitys_contribution(tiny_bundle_dir: Path) -> None:
    manifest = read_manifest(tiny_bundle_dir)[1]
    item = ClassifiedItem(
        np.array([0.2, 0.7, 0.1], np.float32),
        None,
        TIMINGS,
        without_image=np.array([0.5, 0.4, 0.1], np.float32),
        without_text=np.array([0.1, 0.8, 0.1], np.float32),
    )
    explanation = classify_response(item, manifest, top_k=None).explanation
    assert explanation is not None
    assert len(explanation.top) == DEFAULT_EXPLAINED
    predicted = explanation.predicted
    assert predicted.label == LABELS[1]
    assert predicted.image_contribution == pytest.approx(0.7 - 0.4)
    assert predicted.text_contribution == pytest.approx(0.7 - 0.8)
    assert [c.label for c in explanation.top] == [LABELS[1], LABELS[0], LABELS[2]]
    explained_two = classify_response(item, manifest, top_k=2).explanation
    assert explained_two is not None
    assert len(explained_two.top) == 2


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_the_encoded_answer_is_the_models_json(
    tiny_bundle_dir: Path, tmp_path: Path, top_k: int | None
) -> None:
    """``classify_json`` skips building the model: its bytes must be the model's own JSON,
    for every shape of answer (explained or not, a modality missing, a multilabel bundle's
    thresholds, values JSON writes in exponent form)."""
    make_tiny_multilabel_bundle(tmp_path)
    manifests = [read_manifest(tiny_bundle_dir)[1], read_manifest(tmp_path)[1]]
    for manifest in manifests:
        n = len(manifest.labels)
        probabilities = np.linspace(0.9, 1e-7, n, dtype=np.float32)[::-1].copy()
        items = [
            ClassifiedItem(probabilities, None, TIMINGS),
            ClassifiedItem(probabilities, "image", Timings(1e-9, 123.4567891)),
            ClassifiedItem(
                probabilities,
                None,
                TIMINGS,
                without_image=np.full(n, 1.0 / 3, np.float32),
                without_text=np.linspace(0.0, 1.0, n, dtype=np.float32),
            ),
        ]
        for item in items:
            expected = classify_response(item, manifest, top_k).model_dump_json().encode()
            assert classify_json(item, manifest, top_k) == expected
