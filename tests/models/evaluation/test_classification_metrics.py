"""models.evaluation.classification_metrics against hand-worked examples, and the temperature fit
on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.classification_metrics import (
    ReliabilityBin,
    calibrated_probabilities,
    classification_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)

LABELS = ("cat", "dog", "fox")
# Eight examples, three classes. (true, predicted) pairs:
#   (0,0) (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (2,0)
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 0, 0])
# Confusion matrix, rows = true, columns = predicted:
#   cat: 2 predicted cat, 1 dog, 0 fox
#   dog: 0 cat, 2 dog, 0 fox
#   fox: 2 cat, 0 dog, 1 fox
CONFUSION = [[2, 1, 0], [0, 2, 0], [2, 0, 1]]
# accuracy = diagonal / total = (2 + 2 + 1) / 8 = 5/8
# cat: TP 2, predicted 4 (column), true 3 (row) -> P 2/4 = 1/2, R 2/3,
#      F1 = 2PR / (P + R) = (2/3) / (7/6) = 4/7
# dog: TP 2, predicted 3, true 2 -> P 2/3, R 1, F1 = (4/3) / (5/3) = 4/5
# fox: TP 1, predicted 1, true 3 -> P 1, R 1/3, F1 = (2/3) / (4/3) = 1/2
PER_CLASS = {
    "cat": (1 / 2, 2 / 3, 4 / 7, 3),
    "dog": (2 / 3, 1.0, 4 / 5, 2),
    "fox": (1.0, 1 / 3, 1 / 2, 3),
}
# Macro averages are plain means of the per-class values:
#   P = (1/2 + 2/3 + 1) / 3 = 13/18; R = (2/3 + 1 + 1/3) / 3 = 2/3;
#   F1 = (4/7 + 4/5 + 1/2) / 3 = (40 + 56 + 35) / 70 / 3 = 131/210 (not the F1 of macro P and R)
MACRO = (13 / 18, 2 / 3, 131 / 210)


def test_classification_report_matches_hand_worked_example() -> None:
    report = classification_report(Y_TRUE, Y_PRED, LABELS)

    assert report.labels == LABELS
    assert report.accuracy == pytest.approx(5 / 8)
    assert (report.macro_precision, report.macro_recall, report.macro_f1) == pytest.approx(MACRO)
    assert report.confusion.tolist() == CONFUSION
    assert [scores.label for scores in report.per_class] == list(LABELS)
    for scores in report.per_class:
        precision, recall, f1, support = PER_CLASS[scores.label]
        assert (scores.precision, scores.recall, scores.f1) == pytest.approx(
            (precision, recall, f1)
        )
        assert scores.support == support


def test_classes_never_predicted_or_absent_score_zero_without_warnings() -> None:
    # "dog" (1) is true once but never predicted: P = 0/0 -> 0, R = 0/1 = 0.
    # "emu" (3) is neither true nor predicted: every score 0/0 -> 0, support 0, yet it keeps
    # its row and column in the confusion matrix and counts in the macro averages.
    labels = ("cat", "dog", "fox", "emu")
    report = classification_report(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), labels)

    dog, emu = report.per_class[1], report.per_class[3]
    assert (dog.precision, dog.recall, dog.f1, dog.support) == (0.0, 0.0, 0.0, 1)
    assert (emu.precision, emu.recall, emu.f1, emu.support) == (0.0, 0.0, 0.0, 0)
    assert report.confusion.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    # cat: P 1, R 1; fox: P 2/3, R 1 -> macro P = (1 + 0 + 2/3 + 0) / 4 = 5/12, macro R = 2/4.
    assert report.macro_precision == pytest.approx(5 / 12)
    assert report.macro_recall == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (np.array([0, 1]), np.array([0]), "2 true labels but 1 predictions"),
        (np.array([0, 3]), np.array([0, 1]), r"must be in \[0, 3\)"),
        (np.array([0.0, 1.0]), np.array([0, 1]), "must be integers"),
        (np.array([], dtype=np.int64), np.array([], dtype=np.int64), "non-empty"),
    ],
)
def test_classification_report_rejects_bad_input(
    y_true: np.ndarray, y_pred: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        classification_report(y_true, y_pred, LABELS)


# Five predictions over three classes (no confidence on a bin edge):
#   probabilities        true  confidence  predicted  correct
#   [.90, .05, .05]       0       .90          0        yes
#   [.20, .70, .10]       1       .70          1        yes
#   [.10, .25, .65]       0       .65          2        no
#   [.45, .35, .20]       1       .45          0        no
#   [.30, .32, .38]       2       .38          2        yes
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.20, 0.70, 0.10],
        [0.10, 0.25, 0.65],
        [0.45, 0.35, 0.20],
        [0.30, 0.32, 0.38],
    ]
)
PROBS_TRUE = np.array([0, 1, 0, 1, 2])


def test_ece_two_bins_hand_worked() -> None:
    # (0, .5]: .45 wrong, .38 right -> conf .415, acc .5 -> |.5 - .415| * 2/5 = .034
    # (.5, 1]: .90, .70 right, .65 wrong -> conf .75, acc 2/3 -> |2/3 - .75| * 3/5 = .05
    assert expected_calibration_error(PROBS, PROBS_TRUE, bins=2) == pytest.approx(0.084)


def test_ece_and_reliability_five_bins_hand_worked() -> None:
    # (0, .2]: empty
    # (.2, .4]: .38 right             -> |1 - .38| * 1/5 = .124
    # (.4, .6]: .45 wrong             -> |0 - .45| * 1/5 = .090
    # (.6, .8]: .70 right, .65 wrong  -> conf .675, acc .5 -> .175 * 2/5 = .070
    # (.8, 1]:  .90 right             -> |1 - .9| * 1/5 = .020
    # ECE = .124 + .090 + .070 + .020 = .304
    assert expected_calibration_error(PROBS, PROBS_TRUE, bins=5) == pytest.approx(0.304)
    expected = [
        (0.0, 0.2, 0, None, None),
        (0.2, 0.4, 1, 0.38, 1.0),
        (0.4, 0.6, 1, 0.45, 0.0),
        (0.6, 0.8, 2, 0.675, 0.5),
        (0.8, 1.0, 1, 0.90, 1.0),
    ]
    table = reliability_bins(PROBS, PROBS_TRUE, bins=5)
    assert len(table) == len(expected)
    for row, (lower, upper, count, confidence, accuracy) in zip(table, expected, strict=True):
        assert isinstance(row, ReliabilityBin)
        assert (row.lower, row.upper, row.count) == (
            pytest.approx(lower),
            pytest.approx(upper),
            count,
        )
        if count == 0:
            assert (row.confidence, row.accuracy) == (None, None)
        else:
            assert (row.confidence, row.accuracy) == pytest.approx((confidence, accuracy))


def test_bins_are_closed_on_the_right() -> None:
    # Confidence exactly .5 falls in (0, .5], confidence 1 in (.5, 1].
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    table = reliability_bins(probs, np.array([0, 0]), bins=2)
    assert [row.count for row in table] == [1, 1]
    assert table[0].confidence == pytest.approx(0.5)


def test_perfectly_calibrated_bins_have_zero_ece() -> None:
    # Two examples at confidence .5 (one right) and one at 1.0 (right): acc equals conf per bin.
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    assert expected_calibration_error(probs, np.array([0, 1, 0]), bins=2) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.array([[1.5, -0.5]]), r"in \[0, 1\]"),
        (np.array([[np.nan, 1.0]]), "finite"),
        (np.array([0.5, 0.5]), "shape"),
    ],
)
def test_calibration_rejects_bad_probabilities(probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, np.array([0]), bins=2)


def test_calibration_rejects_zero_bins() -> None:
    with pytest.raises(ValueError, match="bins must be at least 1"):
        reliability_bins(PROBS, PROBS_TRUE, bins=0)


def test_softmax_with_temperature() -> None:
    logits = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])
    # Row 1: exp(0) : exp(ln 3) = 1 : 3. At T = 2, 1 : sqrt(3). Row 2 must not overflow.
    assert calibrated_probabilities(logits) == pytest.approx(np.array([[0.25, 0.75], [0.5, 0.5]]))
    root3 = np.sqrt(3.0)
    expected = np.array([[1 / (1 + root3), root3 / (1 + root3)], [0.5, 0.5]])
    assert calibrated_probabilities(logits, temperature=2.0) == pytest.approx(expected)
    with pytest.raises(ValueError, match="temperature"):
        calibrated_probabilities(logits, temperature=0.0)


def test_negative_log_likelihood_hand_worked() -> None:
    # softmax([0, ln 3]) = [1/4, 3/4]: true class 1 costs -ln(3/4), true class 0 costs ln 4.
    logits = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    expected = (-np.log(0.75) + np.log(4.0)) / 2
    assert negative_log_likelihood(logits, np.array([1, 0])) == pytest.approx(expected)


def _synthetic(temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(20_000, 5))
    probs = calibrated_probabilities(logits, temperature)
    cumulative = probs.cumsum(axis=1)
    draws = rng.random((len(probs), 1))
    labels = np.minimum((draws > cumulative).sum(axis=1), probs.shape[1] - 1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_known_temperature(true_temperature: float) -> None:
    logits, labels = _synthetic(true_temperature, seed=7)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # The fit minimises NLL: better than the unscaled logits and than nearby temperatures.
    best = negative_log_likelihood(logits, labels, fitted)
    for other in (fitted * 0.9, fitted * 1.1):
        assert best < negative_log_likelihood(logits, labels, other)
    if true_temperature != 1.0:
        assert best < negative_log_likelihood(logits, labels, 1.0)


def test_fitted_temperature_lowers_ece_of_overconfident_logits() -> None:
    logits, labels = _synthetic(3.0, seed=11)
    fitted = fit_temperature(logits, labels)
    before = expected_calibration_error(calibrated_probabilities(logits), labels, bins=10)
    after = expected_calibration_error(calibrated_probabilities(logits, fitted), labels, bins=10)
    assert before > 0.1
    assert after < 0.02


def test_fit_temperature_rejects_bad_bounds() -> None:
    logits, labels = _synthetic(1.0, seed=0)
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, labels, bounds=(0.0, 10.0))
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, labels, bounds=(2.0, 1.0))
