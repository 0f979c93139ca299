"""What a classified item predicts: the top label, and the predicted labels computed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.bundle.loader import read_manifest
from app.core.classification import ClassifiedItem, Timings, predicted_indices

TIMINGS = Timings(preprocess_s=0.0, inference_s=0.0)


def test_a_multiclass_answer_predicts_the_first_of_equal_maxima(tiny_bundle_dir: Path) -> None:
    manifest = read_manifest(tiny_bundle_dir)[1]
    assert not manifest.multilabel
    tied = np.array([0.1, 0.45, 0.45], np.float32)
    assert predicted_indices(tied, manifest) == [1]
    assert predicted_indices(np.array([0.6, 0.3, 0.1], np.float32), manifest) == [0]
    item = ClassifiedItem(tied, None, TIMINGS)
    assert item.top == 1
    assert item.predicted(manifest) == [1]


def test_the_prediction_is_computed_once_and_handed_out_as_a_copy(
    tiny_bundle_dir: Path,
) -> None:
    manifest = read_manifest(tiny_bundle_dir)[1]
    other = read_manifest(tiny_bundle_dir)[1]
    probabilities = np.array([0.2, 0.1, 0.7], np.float32)
    item = ClassifiedItem(probabilities, None, TIMINGS)
    first = item.predicted(manifest)
    first.append(0)  # the caller's list: the item's answer is unchanged
    probabilities[:] = [0.9, 0.05, 0.05]  # not read again for the same manifest
    assert item.predicted(manifest) == [2]
    assert item.top == 0  # first asked after the change
    assert item.predicted(other) == [0]  # another manifest: computed for it
