"""Small labelled datasets written to disk for trainer tests: class folders of 48x48 grey images, fer2013.csv."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from emostream_trainer.dataset import FER_CLASSES
from PIL import Image

from tests.helpers.tiny_model import synthetic_faces


def write_image(path: Path, image: np.ndarray) -> Path:
    """A grey image file; the suffix picks the format (.png is lossless, .jpg is not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8).reshape(image.shape[0], image.shape[1]), mode="L").save(path)
    return path


def write_folder_dataset(
    root: Path,
    labels: Sequence[str],
    per_class: int | Sequence[int],
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """root/<label>/<n>.png with synthetic faces of class index i (as the tiny model's classes) per label."""
    counts = [per_class] * len(labels) if isinstance(per_class, int) else list(per_class)
    for index, (label, count) in enumerate(zip(labels, counts, strict=True)):
        faces = synthetic_faces(index, count, seed, num_classes=len(labels))
        for n, face in enumerate(faces):
            write_image(root / label / f"{n:03d}{suffix}", face[..., 0])
    return root


def pixels_text(image: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in np.asarray(image).reshape(-1))


def write_csv(
    path: Path, rows: Sequence[tuple[object, object, object]], header: Sequence[str] = ("emotion", "pixels", "Usage")
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def flat_image(value: int) -> np.ndarray:
    return np.full((48, 48), value, np.uint8)


def fer_rows(per_class_usage: dict[str, int], classes: Sequence[str] = FER_CLASSES) -> list[tuple[int, str, str]]:
    """Rows for every class in `classes`, `n` of each Usage; pixel value encodes (class, row) for checks."""
    rows = []
    for usage, n in per_class_usage.items():
        for label in classes:
            emotion = FER_CLASSES.index(label)
            for k in range(n):
                rows.append((emotion, pixels_text(flat_image(emotion * 30 + k)), usage))
    return rows
