"""Read FER-2013 in its folder layout or its original CSV layout into arrays."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from emostream.errors import EmostreamError

FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The seven FER-2013 classes, in the order of the CSV's `emotion` column."""

DEFAULT_LABELS: tuple[str, ...] = ("happy", "neutral", "fear")
IMAGE_SIZE = 48
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class DatasetError(EmostreamError, ValueError):
    """The data cannot be used as it is; the message names the file or folder."""


@dataclass(frozen=True)
class Dataset:
    """Grey 48x48 uint8 images [N,48,48,1] and integer labels [N] indexing `labels`."""

    images: np.ndarray
    targets: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.targets, minlength=len(self.labels))
        return {label: int(n) for label, n in zip(self.labels, counts, strict=True)}


def check_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Reject unknown or repeated labels with a message naming them."""
    unknown = [label for label in labels if label not in FER_CLASSES]
    if unknown:
        raise DatasetError(f"unknown label(s) {unknown}; choose from {list(FER_CLASSES)}")
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise DatasetError(f"labels must be at least two distinct classes, got {list(labels)}")
    return labels


def load(source: Path, labels: tuple[str, ...], usage: tuple[str, ...] = ("Training",)) -> Dataset:
    """Load a folder of class folders, or a fer2013.csv (rows whose Usage is in `usage`)."""
    check_labels(labels)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _load_csv(source, labels, usage)
    if source.is_dir():
        return _load_folder(source, labels)
    raise DatasetError(f"{source}: neither a folder of class folders nor a .csv file")


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path}: unreadable image ({error})") from error
    if grey.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"{path}: image is {grey.shape[1]}x{grey.shape[0]}, expected 48x48")
    return grey


def _load_folder(root: Path, labels: tuple[str, ...]) -> Dataset:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if p.name not in FER_CLASSES]
    if unknown:
        raise DatasetError(f"{root}: unknown class folder(s) {unknown}; expected names from {list(FER_CLASSES)}")
    images: list[np.ndarray] = []
    targets: list[int] = []
    for index, label in enumerate(labels):
        folder = root / label
        if not folder.is_dir():
            raise DatasetError(f"{folder}: class folder missing")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{folder}: class folder has no images")
        images.extend(_read_image(path) for path in files)
        targets.extend([index] * len(files))
    return Dataset(np.stack(images)[..., None], np.asarray(targets, dtype=np.int64), labels)


def _load_csv(path: Path, labels: tuple[str, ...], usage: tuple[str, ...]) -> Dataset:
    wanted = {FER_CLASSES.index(label): index for index, label in enumerate(labels)}
    images: list[np.ndarray] = []
    targets: list[int] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            if row["Usage"] not in usage:
                continue
            emotion = _parse_emotion(path, line, row["emotion"])
            if emotion in wanted:
                images.append(_parse_pixels(path, line, row["pixels"]))
                targets.append(wanted[emotion])
    dataset = Dataset(
        np.stack(images)[..., None] if images else np.zeros((0, 48, 48, 1), np.uint8),
        np.asarray(targets, dtype=np.int64),
        labels,
    )
    empty = [label for label, n in dataset.class_counts().items() if n == 0]
    if empty:
        raise DatasetError(f"{path}: no rows with Usage in {list(usage)} for class(es) {empty}")
    return dataset


def _parse_emotion(path: Path, line: int, value: str) -> int:
    if not value.strip().isdigit() or int(value) >= len(FER_CLASSES):
        raise DatasetError(f"{path}:{line}: emotion {value!r} is not an integer 0-6")
    return int(value)


def _parse_pixels(path: Path, line: int, value: str) -> np.ndarray:
    try:
        pixels = np.asarray([int(v) for v in value.split()], dtype=np.int64)
    except ValueError as error:
        raise DatasetError(f"{path}:{line}: pixels are not integers") from error
    if pixels.size != IMAGE_SIZE * IMAGE_SIZE or pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError(f"{path}:{line}: expected 2304 pixel values in 0-255, got {pixels.size}")
    return pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def split_holdout(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold a stratified `fraction` of `data` out as validation."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for index in range(len(data.labels)):
        members = np.flatnonzero(data.targets == index)
        rng.shuffle(members)
        held.append(members[: max(1, int(len(members) * fraction))])
    mask = np.zeros(len(data), dtype=bool)
    mask[np.concatenate(held)] = True
    return (
        Dataset(data.images[~mask], data.targets[~mask], data.labels),
        Dataset(data.images[mask], data.targets[mask], data.labels),
    )
