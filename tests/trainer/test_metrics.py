"""Metrics on tiny examples whose values are worked out by hand here."""

from __future__ import annotations

import numpy as np
import pytest
from emostream_trainer.metrics import confusion_matrix, expected_calibration_error, report

LABELS = ("happy", "neutral", "fear")
# true:       0    0    0    1    1    2
# predicted:  0    0    1    1    2    2
PROBABILITIES = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.6, 0.3, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.2, 0.5],
        [0.1, 0.1, 0.8],
    ]
)
EXPECTED = np.array([0, 0, 0, 1, 1, 2])


def test_confusion_matrix_rows_true_columns_predicted() -> None:
    matrix = confusion_matrix(EXPECTED, PROBABILITIES.argmax(axis=1), 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_matrix(np.array([2, 2]), np.array([0, 0]), 3).tolist() == [[0, 0, 0], [0, 0, 0], [2, 0, 0]]


def test_report_per_class_precision_recall_f1() -> None:
    result = report(PROBABILITIES, EXPECTED, LABELS)
    assert result["labels"] == list(LABELS)
    assert result["samples"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # happy: P = 2/2, R = 2/3, F1 = 2*1*(2/3)/(5/3) = 0.8
    # neutral: P = 1/2, R = 1/2, F1 = 0.5
    # fear: P = 1/2, R = 1/1, F1 = 2*0.5*1/1.5 = 2/3
    expected = {
        "happy": (1.0, 2 / 3, 0.8, 3),
        "neutral": (0.5, 0.5, 0.5, 2),
        "fear": (0.5, 1.0, 2 / 3, 1),
    }
    for label, (precision, recall, f1, support) in expected.items():
        row = result["per_class"][label]
        assert row["precision"] == pytest.approx(precision, abs=1e-4)
        assert row["recall"] == pytest.approx(recall, abs=1e-4)
        assert row["f1"] == pytest.approx(f1, abs=1e-4)
        assert row["support"] == support
    assert result["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-3)


def test_class_never_predicted_or_absent_scores_zero() -> None:
    probabilities = np.array([[0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.4, 0.6, 0.0]])
    result = report(probabilities, np.array([0, 1, 1]), LABELS)
    # fear: no samples, never predicted -> 0, not a division error.
    assert result["per_class"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # neutral: predicted once, right; recall 1/2.
    assert result["per_class"]["neutral"]["precision"] == 1.0
    assert result["per_class"]["neutral"]["recall"] == 0.5


def test_expected_calibration_error_by_hand() -> None:
    # Confidences (max prob) and correctness, with 15 equal bins of width 1/15:
    #   0.9 right, 0.6 right, 0.7 wrong (pred 1, true 0), 0.8 right, 0.5 wrong (pred 2, true 1), 0.8 right.
    # Bins: (0.4667,0.5333]: {0.5 wrong}          -> |0.5 - 0|    * 1/6
    #       (0.5333,0.6]:    {0.6 right}          -> |0.6 - 1|    * 1/6
    #       (0.6667,0.7333]: {0.7 wrong}          -> |0.7 - 0|    * 1/6
    #       (0.7333,0.8]:    {0.8 right, 0.8 right} -> |0.8 - 1|  * 2/6
    #       (0.8667,0.9333]: {0.9 right}          -> |0.9 - 1|    * 1/6
    by_hand = (0.5 + 0.4 + 0.7 + 2 * 0.2 + 0.1) / 6
    assert expected_calibration_error(PROBABILITIES, EXPECTED) == pytest.approx(by_hand, abs=1e-9)
    assert report(PROBABILITIES, EXPECTED, LABELS)["expected_calibration_error"] == pytest.approx(by_hand, abs=1e-4)


def test_calibration_of_confident_right_and_wrong_models() -> None:
    onehot = np.eye(3)[[0, 1, 2, 0]]
    assert expected_calibration_error(onehot, np.array([0, 1, 2, 0])) == 0.0
    assert expected_calibration_error(onehot, np.array([1, 2, 0, 1])) == pytest.approx(1.0)
    # Two bins: 0.5 confident and right half the time -> 0; everything uniform-ish and calibrated.
    halves = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert expected_calibration_error(halves, np.array([0, 1])) == pytest.approx(0.0)


def test_summary_gives_accuracy_and_recall_per_class() -> None:
    from emostream_trainer.metrics import summary

    probabilities = np.asarray([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    expected = np.asarray([0, 1, 1, 2])  # the third is a neutral face called happy
    result = summary(probabilities, expected, ("happy", "neutral", "fear"))
    assert result == {"accuracy": 0.75, "recall_happy": 1.0, "recall_neutral": 0.5, "recall_fear": 1.0}
