"""Distillation targets: what one or more trained versions (the teachers) say about each training image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emostream_trainer.dataset import Dataset, DatasetError
from emostream_trainer.evaluate_command import predict_all, read_version_folder, saved_model_predictor


def teacher_probabilities(teachers: list[Path], data: Dataset, batch_size: int = 256) -> np.ndarray:
    """Mean served probabilities of the teachers for each image, float32 [N, len(data.labels)] in data's order.

    Teachers are SavedModel version folders, so what they pass on includes their flip averaging.
    """
    if not teachers:
        raise ValueError("teacher_probabilities needs at least one teacher")
    total = np.zeros((len(data), len(data.labels)), dtype=np.float32)
    for folder in teachers:
        labels, _ = read_version_folder(folder)
        if sorted(labels) != sorted(data.labels):
            raise DatasetError(
                f"{folder}: the teacher knows {list(labels)} but training is on {list(data.labels)}; "
                "a teacher must cover exactly the trained classes"
            )
        probabilities = predict_all(saved_model_predictor(folder), data.images, batch_size)
        total += probabilities[:, [labels.index(label) for label in data.labels]]
    mean: np.ndarray = total / len(teachers)
    return mean
