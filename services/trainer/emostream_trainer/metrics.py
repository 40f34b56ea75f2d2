"""Classification metrics from predicted probabilities: accuracy, per-class P/R/F1, confusion, calibration."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def confusion_matrix(expected: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (expected, predicted), 1)
    return matrix


def expected_calibration_error(probabilities: np.ndarray, expected: np.ndarray, bins: int = 15) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == expected
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def report(probabilities: np.ndarray, expected: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Everything `emostream evaluate` prints, as plain JSON-ready values."""
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(expected, predicted, len(labels))
    per_class: dict[str, dict[str, float]] = {}
    for index, label in enumerate(labels):
        true_positive = float(matrix[index, index])
        precision = true_positive / max(1.0, float(matrix[:, index].sum()))
        recall = true_positive / max(1.0, float(matrix[index, :].sum()))
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": int(matrix[index, :].sum()),
        }
    return {
        "labels": list(labels),
        "samples": len(expected),
        "accuracy": round(float((predicted == expected).mean()), 4),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "expected_calibration_error": round(expected_calibration_error(probabilities, expected), 4),
    }


def summary(probabilities: np.ndarray, expected: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """Accuracy and per-class recall: one line per model in the benchmarks."""
    predicted = probabilities.argmax(axis=1)
    recall = {
        f"recall_{label}": round(float((predicted[expected == i] == i).mean()), 4) for i, label in enumerate(labels)
    }
    return {"accuracy": round(float((predicted == expected).mean()), 4), **recall}
