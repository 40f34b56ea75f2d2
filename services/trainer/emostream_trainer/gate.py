"""The gate at promotion: the candidate against the served version on the same labelled data.

Both versions are loaded from their folders and run on each dataset (FER-2013 validation, and
the detector's own crops from the pipeline benchmark). The candidate is refused when it is worse
than the served version by more than a tolerance on any of: accuracy, the recall of any class,
fear recall (its own, tighter tolerance: the class the product exists for), and expected
calibration error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emostream_trainer.dataset import DatasetError, load
from emostream_trainer.evaluate_command import predict_all, read_version_folder, saved_model_predictor
from emostream_trainer.metrics import report

FEAR = "fear"


@dataclass(frozen=True)
class Tolerances:
    """How much worse than the served version a candidate may be (absolute, in [0, 1])."""

    accuracy: float = 0.005
    class_recall: float = 0.02
    fear_recall: float = 0.01
    calibration_error: float = 0.01


@dataclass(frozen=True)
class Comparison:
    """Both versions' metrics on one dataset, and what is worse beyond tolerance."""

    dataset: str
    samples: int
    served: dict[str, Any]
    candidate: dict[str, Any]
    worse: list[str]


def _scores(folder: Path, images: np.ndarray, targets: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    probabilities = predict_all(saved_model_predictor(folder), images, 256)
    return report(probabilities, targets, labels)


def compare(name: str, data: Path, served: Path, candidate: Path, tolerances: Tolerances) -> Comparison:
    """Score both version folders on `data` (class folders) and list the regressions."""
    labels, _ = read_version_folder(served)
    candidate_labels, _ = read_version_folder(candidate)
    if set(candidate_labels) != set(labels):
        raise DatasetError(f"the candidate serves {list(candidate_labels)}, the served version {list(labels)}")
    dataset = load(data, labels, usage=("PublicTest",))
    ours = _scores(served, dataset.images, dataset.targets, labels)
    # The candidate may order its outputs differently: score it in its own order, on the same faces.
    order = [candidate_labels.index(label) for label in labels]
    theirs = _scores(candidate, dataset.images, np.asarray(order)[dataset.targets], candidate_labels)
    return Comparison(name, len(dataset), ours, theirs, regressions(name, ours, theirs, labels, tolerances))


def regressions(
    name: str, served: dict[str, Any], candidate: dict[str, Any], labels: tuple[str, ...], tolerances: Tolerances
) -> list[str]:
    """One phrase per metric on which the candidate is worse beyond its tolerance."""
    worse: list[str] = []

    def check(metric: str, ours: float, theirs: float, tolerance: float, higher_is_better: bool = True) -> None:
        loss = ours - theirs if higher_is_better else theirs - ours
        if loss > tolerance:
            worse.append(f"{name} {metric} {theirs:.4f} vs {ours:.4f} (tolerance {tolerance:g})")

    check("accuracy", served["accuracy"], candidate["accuracy"], tolerances.accuracy)
    for label in labels:
        tolerance = tolerances.fear_recall if label == FEAR else tolerances.class_recall
        ours, theirs = served["per_class"][label]["recall"], candidate["per_class"][label]["recall"]
        check(f"{label} recall", ours, theirs, tolerance)
    check(
        "calibration error",
        served["expected_calibration_error"],
        candidate["expected_calibration_error"],
        tolerances.calibration_error,
        higher_is_better=False,
    )
    return worse


def summary_line(comparison: Comparison) -> str:
    """`validation (1998 faces): accuracy 0.8053 -> 0.7983, fear recall ..., ECE ...`"""
    ours, theirs = comparison.served, comparison.candidate
    recalls = ", ".join(
        f"{label} recall {ours['per_class'][label]['recall']:.4f} -> {theirs['per_class'][label]['recall']:.4f}"
        for label in ours["labels"]
    )
    return (
        f"{comparison.dataset} ({comparison.samples} faces): accuracy {ours['accuracy']:.4f} -> "
        f"{theirs['accuracy']:.4f}, {recalls}, calibration error {ours['expected_calibration_error']:.4f} -> "
        f"{theirs['expected_calibration_error']:.4f}"
    )
