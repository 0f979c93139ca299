"""models.evaluation.multilabel_metrics and multilabel_calibration against scikit-learn (and
torch's BCE with positive weights, ``train-head``'s loss), an independent implementation, on
random data and on edge cases (empty predicted sets, a label without positives, every answer
right), plus hand-worked ECE and threshold semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from app.core.pipeline import sigmoid
from models.evaluation import multilabel_calibration as calibration
from models.evaluation.multilabel_metrics import (
    MultilabelReport,
    average_precision,
    decide,
    decision_scores,
    mean_average_precision,
    multilabel_report,
    thinned,
)
from models.evaluation.multilabel_metrics import precision_recall_curve as our_curve

LABELS = ("furry", "pet", "flying", "red", "round")


def _random_case(
    seed: int, rows: int = 60, labels: int = 5, ties: bool = False
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((rows, labels)) < rng.uniform(0.15, 0.6, labels)).astype(np.int64)
    # Scores that know something about the truth, so curves and F1 are neither 0 nor 1.
    probabilities = np.clip(0.35 * truth + 0.65 * rng.random((rows, labels)), 0, 1)
    if ties:  # many equal scores: thresholds must admit all of a tie or none
        probabilities = np.round(probabilities, 1)
    thresholds = rng.uniform(0.2, 0.8, labels).round(3).tolist()
    return truth, probabilities, thresholds


def _check_against_sklearn(
    report: MultilabelReport, truth: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray
) -> None:
    """Every score of ``report`` against scikit-learn on the same indicator arrays."""
    for average in ("micro", "macro"):
        assert getattr(report, f"{average}_f1") == pytest.approx(
            f1_score(truth, predicted, average=average, zero_division=0)
        ), average
        assert getattr(report, f"{average}_precision") == pytest.approx(
            precision_score(truth, predicted, average=average, zero_division=0)
        ), average
        assert getattr(report, f"{average}_recall") == pytest.approx(
            recall_score(truth, predicted, average=average, zero_division=0)
        ), average
    # An item with no true and no predicted label is right: scikit-learn's zero_division=1.
    assert report.samples_f1 == pytest.approx(
        f1_score(truth, predicted, average="samples", zero_division=1)
    )
    assert report.hamming_loss == pytest.approx(hamming_loss(truth, predicted))
    assert report.subset_accuracy == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, average=None, zero_division=0
    )
    expected_ap = []
    for i, row in enumerate(report.per_label):
        assert (row.precision, row.recall, row.f1) == pytest.approx(
            (precision[i], recall[i], f1[i])
        )
        assert row.support == support[i]
        assert row.predicted == predicted[:, i].sum()
        if truth[:, i].any():
            ap = average_precision_score(truth[:, i], probabilities[:, i])
            assert row.average_precision == pytest.approx(ap), row.label
            expected_ap.append(ap)
        else:
            assert row.average_precision is None
    if expected_ap:
        assert report.mean_average_precision == pytest.approx(np.mean(expected_ap))
    else:
        assert report.mean_average_precision is None
    assert report.mean_true_cardinality == pytest.approx(truth.sum(axis=1).mean())
    assert report.mean_predicted_cardinality == pytest.approx(predicted.sum(axis=1).mean())
    assert report.empty_true_sets == int((truth.sum(axis=1) == 0).sum())
    assert report.empty_predicted_sets == int((predicted.sum(axis=1) == 0).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_random_cases_match_sklearn(seed: int, ties: bool) -> None:
    truth, probabilities, thresholds = _random_case(seed, ties=ties)
    predicted = (probabilities >= np.asarray(thresholds)).astype(np.int64)
    assert 0 < predicted.mean() < 1
    report = multilabel_report(truth, probabilities, thresholds, LABELS)
    _check_against_sklearn(report, truth, probabilities, predicted)
    assert report.average_precision_skipped == ()
    assert [row.threshold for row in report.per_label] == thresholds
    # With every label positive somewhere, mAP is scikit-learn's macro average precision.
    assert report.mean_average_precision == pytest.approx(
        average_precision_score(truth, probabilities, average="macro")
    )


def test_empty_predicted_sets() -> None:
    """Thresholds above every probability: nothing predicted for anyone."""
    truth, probabilities, _ = _random_case(5)
    probabilities = probabilities * 0.5
    thresholds = [0.9] * len(LABELS)
    predicted = np.zeros_like(truth)
    report = multilabel_report(truth, probabilities, thresholds, LABELS)
    _check_against_sklearn(report, truth, probabilities, predicted)
    assert (report.micro_precision, report.micro_f1, report.macro_f1) == (0.0, 0.0, 0.0)
    assert report.mean_predicted_cardinality == 0.0
    assert report.empty_predicted_sets == len(truth)
    # Only items with no true label either are right, each scoring sample F1 1.
    empty = truth.sum(axis=1) == 0
    assert report.subset_accuracy == pytest.approx(empty.mean())
    assert report.samples_f1 == pytest.approx(empty.mean())
    # Average precision does not depend on the thresholds.
    assert report.mean_average_precision is not None
    assert report.mean_average_precision > 0


def test_some_empty_sets_on_both_sides() -> None:
    # Rows: both empty (sample F1 1), true empty but one predicted (0), one of two right (2/3).
    truth = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 0]])
    probabilities = np.array([[0.1, 0.2, 0.3], [0.9, 0.2, 0.3], [0.8, 0.1, 0.2]])
    predicted = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0]])
    report = multilabel_report(truth, probabilities, [0.5, 0.5, 0.5], ("a", "b", "c"))
    _check_against_sklearn(report, truth, probabilities, predicted)
    assert report.samples_f1 == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert report.subset_accuracy == pytest.approx(1 / 3)
    assert report.hamming_loss == pytest.approx(2 / 9)
    assert report.empty_true_sets == 2
    assert report.empty_predicted_sets == 1


def test_a_label_without_positives_is_left_out_of_map_only() -> None:
    truth, probabilities, thresholds = _random_case(7)
    truth[:, 2] = 0  # "flying": never true, yet predicted for some items
    predicted = (probabilities >= np.asarray(thresholds)).astype(np.int64)
    assert predicted[:, 2].any()
    report = multilabel_report(truth, probabilities, thresholds, LABELS)
    _check_against_sklearn(report, truth, probabilities, predicted)
    assert report.average_precision_skipped == ("flying",)
    flying = report.per_label[2]
    assert (flying.support, flying.recall, flying.f1, flying.average_precision) == (
        0,
        0.0,
        0.0,
        None,
    )
    # The macro F1 still counts it (as 0), over all five labels.
    assert report.macro_f1 == pytest.approx(np.mean([row.f1 for row in report.per_label]))
    kept = [row.average_precision for row in report.per_label if row.average_precision is not None]
    assert len(kept) == 4
    assert report.mean_average_precision == pytest.approx(np.mean(kept))


def test_no_label_has_positives() -> None:
    truth = np.zeros((4, 2), dtype=np.int64)
    probabilities = np.array([[0.1, 0.2], [0.3, 0.9], [0.2, 0.1], [0.0, 0.4]])
    report = multilabel_report(truth, probabilities, [0.5, 0.5], ("a", "b"))
    assert report.mean_average_precision is None
    assert report.average_precision_skipped == ("a", "b")
    assert report.micro_f1 == f1_score(truth, decide(probabilities, [0.5, 0.5]), average="micro")


def test_all_correct() -> None:
    truth, _, _ = _random_case(9)
    truth[0] = 0  # one item with no label, answered "no label"
    probabilities = np.where(truth == 1, 0.9, 0.1)
    report = multilabel_report(truth, probabilities, [0.5] * len(LABELS), LABELS)
    _check_against_sklearn(report, truth, probabilities, truth)
    for name in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "mean_average_precision"):
        assert getattr(report, name) == pytest.approx(1.0), name
    assert report.hamming_loss == 0.0
    assert report.mean_predicted_cardinality == report.mean_true_cardinality


def test_thresholds_compare_in_the_probabilities_dtype() -> None:
    """The service compares a float32 probability with a Python float threshold, which NumPy
    rounds to float32: float32(0.7) < 0.7, yet it counts as reaching the threshold 0.7."""
    probabilities = np.array([[0.7, 0.3, 0.55]], dtype=np.float32)
    thresholds = [0.7, 0.3, 0.55]
    served = [bool(probabilities[0, i] >= thresholds[i]) for i in range(3)]  # the service's test
    assert decide(probabilities, thresholds).tolist() == [served] == [[True, True, True]]
    assert float(probabilities[0, 0]) < 0.7  # in float64 it would fall short
    # Just below a threshold's float32 value is not predicted.
    below = np.nextafter(np.float32(0.7), np.float32(0))
    assert decide(np.array([[below, 0.0]], dtype=np.float32), [0.7, 0.5]).tolist() == [
        [False, False]
    ]


def test_precision_recall_curve_matches_sklearn() -> None:
    truth, probabilities, _ = _random_case(11, ties=True)
    for i in range(truth.shape[1]):
        curve = our_curve(truth[:, i], probabilities[:, i])
        precision, recall, thresholds = precision_recall_curve(truth[:, i], probabilities[:, i])
        # scikit-learn lists thresholds lowest first and appends the point (recall 0, precision 1).
        np.testing.assert_allclose(curve.precision, precision[-2::-1])
        np.testing.assert_allclose(curve.recall, recall[-2::-1])
        np.testing.assert_allclose(curve.thresholds, thresholds[::-1])


def test_thinned_curve_keeps_its_ends() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random(1000) < 0.3).astype(np.int64)
    curve = our_curve(truth, rng.random(1000))
    assert curve.recall.size == 1000
    short = thinned(curve, 50)
    assert short.recall.size == 50
    assert short.recall[0] == curve.recall[0]
    assert short.recall[-1] == curve.recall[-1] == 1.0
    assert np.all(np.diff(short.recall) >= 0)
    assert thinned(short, 50) is short


def test_average_precision_edge_cases() -> None:
    assert average_precision(np.array([0, 0]), np.array([0.3, 0.4])) is None
    assert average_precision(np.array([1, 0]), np.array([0.9, 0.1])) == 1.0
    # One positive ranked last of three: precision 1/3 at recall 1.
    assert average_precision(np.array([0, 0, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1 / 3)


def _ece_by_hand(probabilities: np.ndarray, truth: np.ndarray, bins: int) -> float:
    """A label's ECE from scikit-learn's calibration curve (the same (a, b] bins) and the
    bins' counts, computed here with ceil."""
    rate, mean = calibration_curve(truth, probabilities, n_bins=bins, strategy="uniform")
    index = np.clip(np.ceil(probabilities * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / truth.size * np.abs(rate - mean)))


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_label_ece_matches_an_independent_computation(bins: int) -> None:
    truth, probabilities, _ = _random_case(13, rows=200)
    table = calibration.label_calibration(probabilities, truth, LABELS, bins)
    assert [entry.label for entry in table] == list(LABELS)
    for i, entry in enumerate(table):
        assert entry.ece == pytest.approx(_ece_by_hand(probabilities[:, i], truth[:, i], bins))
        assert len(entry.bins) == bins
        assert sum(b.count for b in entry.bins) == len(truth)


def test_hand_worked_label_ece() -> None:
    # Two bins. Probabilities 0.2, 0.4 (bin 1, mean 0.3, one positive of two: rate 0.5) and
    # 0.5 (exactly on the edge: bin 1 too), 0.9 (bin 2, rate 1).
    # Bin 1: 0.2, 0.4, 0.5 -> mean 11/30, positives 1 of 3; bin 2: 0.9 -> 1 of 1.
    # ECE = 3/4 |1/3 - 11/30| + 1/4 |1 - 0.9| = 3/4 * 1/30 + 1/40 = 1/40 + 1/40 = 1/20.
    probabilities = np.array([[0.2], [0.4], [0.5], [0.9]])
    truth = np.array([[0], [1], [0], [1]])
    (entry,) = calibration.label_calibration(probabilities, truth, ["a"], 2)
    assert entry.ece == pytest.approx(1 / 20)
    assert [b.count for b in entry.bins] == [3, 1]
    assert entry.bins[0].mean_probability == pytest.approx(11 / 30)
    assert entry.bins[0].positive_rate == pytest.approx(1 / 3)


def test_binary_cross_entropy_matches_log_loss() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(80, 4))
    truth = (rng.random((80, 4)) < 0.4).astype(np.int64)
    for temperature in (1.0, 2.5):
        probabilities = expit(logits / temperature)
        # Every label has the same number of items, so the mean of per-label log losses is
        # the mean over every (item, label).
        expected = np.mean(
            [log_loss(truth[:, i], probabilities[:, i], labels=[0, 1]) for i in range(4)]
        )
        assert calibration.binary_cross_entropy(probabilities, truth) == pytest.approx(expected)
        assert calibration.binary_cross_entropy_from_logits(
            logits, truth, temperature
        ) == pytest.approx(expected)
        np.testing.assert_allclose(
            sigmoid(logits, temperature, dtype=np.float64), probabilities, rtol=1e-12
        )
    # From the logits a confident miss stays finite and exact: -log sigmoid(-40) = 40 + tiny.
    far = calibration.binary_cross_entropy_from_logits(np.array([[-40.0]]), np.array([[1]]))
    assert far == pytest.approx(40.0 + math.log1p(math.exp(-40.0)))


def test_binary_cross_entropy_from_logits_is_torchs_with_pos_weight() -> None:
    """With per-label positive weights it is ``train-head``'s loss: torch's BCE-with-logits."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (50, 3))
    targets = (rng.random((50, 3)) < 0.3).astype(np.float32)
    weights = np.asarray([1.0, 3.5, 0.2], dtype=np.float32)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits / 1.7),
        torch.from_numpy(targets).double(),
        pos_weight=torch.from_numpy(weights).double(),
    )
    actual = calibration.binary_cross_entropy_from_logits(logits, targets, 1.7, weights)
    assert actual == pytest.approx(float(expected), rel=1e-12)
    # Huge logits stay finite (log-sum-exp form).
    huge = calibration.binary_cross_entropy_from_logits(np.array([[1e4, -1e4]]), np.array([[0, 1]]))
    assert math.isfinite(huge)


def test_decision_scores_and_map_match_sklearn() -> None:
    """The scores ``train-head`` picks its winner on (micro-F1, macro-F1, mAP, per label)."""
    rng = np.random.default_rng(3)
    targets = (rng.random((80, 4)) < 0.3).astype(np.float32)
    targets[:, 3] = 0  # a label without positives
    probabilities = np.round(rng.random((80, 4)), 1)  # with ties
    predicted = probabilities >= 0.5
    scores = decision_scores(targets, predicted)
    micro = f1_score(targets, predicted, average="micro", zero_division=0)
    macro = f1_score(targets, predicted, average="macro", zero_division=0)
    assert scores.micro_f1 == pytest.approx(micro)
    assert scores.macro_f1 == pytest.approx(macro)
    for j in range(3):
        assert average_precision(targets[:, j] > 0, probabilities[:, j]) == pytest.approx(
            average_precision_score(targets[:, j], probabilities[:, j])
        )
    expected_map = np.mean(
        [average_precision_score(targets[:, j], probabilities[:, j]) for j in range(3)]
    )
    assert mean_average_precision(targets, probabilities) == pytest.approx(expected_map)
    assert mean_average_precision(targets[:, 3:], probabilities[:, 3:]) is None
    f1 = f1_score(targets, predicted, average=None, zero_division=0)
    assert list(scores.f1) == pytest.approx(list(f1))
    assert scores.support.tolist() == targets.sum(axis=0).astype(int).tolist()
    precision, recall, _, _ = precision_recall_fscore_support(
        targets, predicted, average=None, zero_division=0
    )
    assert list(scores.precision) == pytest.approx(list(precision))
    assert list(scores.recall) == pytest.approx(list(recall))


@pytest.mark.parametrize(
    ("truth", "probabilities", "thresholds", "message"),
    [
        (np.ones((2, 2)), np.ones((2, 3)) / 2, [0.5] * 3, "truth has shape"),
        (np.full((2, 2), 2), np.ones((2, 2)) / 2, [0.5] * 2, "only 0 and 1"),
        (np.ones((2, 2)), np.full((2, 2), 1.5), [0.5] * 2, r"in \[0, 1\]"),
        (np.ones((2, 2)), np.full((2, 2), np.nan), [0.5] * 2, r"in \[0, 1\]"),
        (np.ones((2, 2)), np.ones((2, 2)) / 2, [0.5], "1 thresholds for 2 labels"),
        (np.ones((0, 2)), np.ones((0, 2)), [0.5] * 2, "shape"),
    ],
)
def test_bad_inputs_are_clear_errors(
    truth: np.ndarray, probabilities: np.ndarray, thresholds: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        multilabel_report(truth, probabilities, thresholds, ("a", "b"))
