"""Loading FER-2013 as class folders or as fer2013.csv, the holdout split, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from emostream_trainer.dataset import FER_CLASSES, DatasetError, load, split_holdout

from tests.trainer.data import fer_rows, flat_image, pixels_text, write_csv, write_folder_dataset, write_image

LABELS = ("happy", "neutral", "fear")


def test_folder_layout_counts_labels_and_pixels(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", LABELS, [4, 3, 2], seed=1)
    (root / "happy" / "notes.txt").write_text("not an image, ignored")
    data = load(root, LABELS)
    assert len(data) == 9
    assert data.labels == LABELS
    assert data.images.shape == (9, 48, 48, 1) and data.images.dtype == np.uint8
    assert data.class_counts() == {"happy": 4, "neutral": 3, "fear": 2}
    # Targets follow the order of `labels`, not the folders' alphabetical order.
    assert data.targets.tolist() == [0] * 4 + [1] * 3 + [2] * 2
    # PNG is lossless: the first happy image reads back exactly.
    from tests.helpers.tiny_model import synthetic_faces

    assert np.array_equal(data.images[0], synthetic_faces(0, 4, 1, num_classes=3)[0])


def test_folder_layout_may_hold_other_fer_classes_and_jpeg(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", ("happy", "sad", "fear", "neutral"), 2, suffix=".jpg")
    data = load(root, ("fear", "happy"))
    assert data.class_counts() == {"fear": 2, "happy": 2}
    assert data.targets.tolist() == [0, 0, 1, 1]


def test_csv_layout_filters_by_usage_and_maps_emotions(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fer2013.csv", fer_rows({"Training": 3, "PublicTest": 2, "PrivateTest": 1}))
    train = load(path, LABELS)
    assert train.class_counts() == {"happy": 3, "neutral": 3, "fear": 3}
    # Pixel values encode the FER emotion index: each target must match its row's emotion.
    emotions = train.images[:, 0, 0, 0] // 30
    assert [LABELS[t] for t in train.targets] == [FER_CLASSES[e] for e in emotions]
    public = load(path, LABELS, usage=("PublicTest",))
    assert len(public) == 6
    both = load(path, ("happy", "sad"), usage=("PublicTest", "PrivateTest"))
    assert both.class_counts() == {"happy": 3, "sad": 3}


def test_holdout_is_stratified_and_deterministic(tmp_path: Path) -> None:
    data = load(write_folder_dataset(tmp_path / "train", LABELS, [20, 10, 5]), LABELS)
    train, held = split_holdout(data, 0.2, seed=3)
    assert held.class_counts() == {"happy": 4, "neutral": 2, "fear": 1}
    assert train.class_counts() == {"happy": 16, "neutral": 8, "fear": 4}
    again_train, again_held = split_holdout(data, 0.2, seed=3)
    assert np.array_equal(held.images, again_held.images) and np.array_equal(train.targets, again_train.targets)
    _, other = split_holdout(data, 0.2, seed=4)
    assert not np.array_equal(held.images, other.images)
    # Train and holdout partition the data: no image is in both.
    seen = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in seen for image in held.images)


def _error(source: Path, labels: tuple[str, ...] = LABELS, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as caught:
        load(source, labels, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", LABELS, 2)
    bad = root / "neutral" / "broken.jpg"
    bad.write_bytes(b"\x00garbage, not a jpeg" * 10)
    message = _error(root)
    assert str(bad) in message and "unreadable image" in message


def test_wrong_size_names_the_file(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", LABELS, 2)
    big = write_image(root / "fear" / "big.png", np.zeros((64, 64), np.uint8))
    message = _error(root)
    assert str(big) in message and "64x64" in message and "48x48" in message


def test_unknown_class_folder_is_named(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", LABELS, 2)
    write_image(root / "joy" / "0.png", flat_image(5))
    message = _error(root)
    assert "joy" in message and str(root) in message


def test_empty_and_missing_class_folders_are_named(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", ("happy", "neutral"), 2)
    assert str(root / "fear") in _error(root) and "missing" in _error(root)
    (root / "fear").mkdir()
    (root / "fear" / "readme.txt").write_text("no images here")
    message = _error(root)
    assert str(root / "fear") in message and "no images" in message


def test_unknown_or_repeated_label_is_rejected(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "train", LABELS, 1)
    assert "joy" in _error(root, ("happy", "joy"))
    assert "distinct" in _error(root, ("happy", "happy"))


def test_neither_folder_nor_csv(tmp_path: Path) -> None:
    other = tmp_path / "data.txt"
    other.write_text("x")
    assert str(other) in _error(other)
    assert str(tmp_path / "absent") in _error(tmp_path / "absent")


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ((3, "1 2 3", "Training"), "expected 2304 pixel values"),
        ((3, pixels_text(flat_image(1)).replace("1", "x", 1), "Training"), "not integers"),
        ((3, pixels_text(np.full((48, 48), 300)), "Training"), "0-255"),
        ((9, pixels_text(flat_image(1)), "Training"), "emotion '9'"),
        (("happy", pixels_text(flat_image(1)), "Training"), "emotion 'happy'"),
    ],
)
def test_bad_csv_rows_name_file_and_line(tmp_path: Path, row: tuple[object, object, object], fragment: str) -> None:
    rows = fer_rows({"Training": 1})
    path = write_csv(tmp_path / "fer2013.csv", [*rows, row])
    message = _error(path)
    assert f"{path}:{len(rows) + 2}" in message and fragment in message


def test_csv_missing_column_and_empty_class(tmp_path: Path) -> None:
    no_usage = write_csv(tmp_path / "a.csv", [(3, pixels_text(flat_image(1)))], header=("emotion", "pixels"))
    message = _error(no_usage)
    assert str(no_usage) in message and "Usage" in message
    only_training = write_csv(tmp_path / "b.csv", fer_rows({"Training": 1}))
    message = _error(only_training, usage=("PublicTest",))
    assert str(only_training) in message and "happy" in message
