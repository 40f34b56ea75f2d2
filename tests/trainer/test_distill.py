"""Distillation: teacher probabilities from exported versions, mixed into the training targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from emostream_trainer import train_command
from emostream_trainer.dataset import Dataset, DatasetError
from emostream_trainer.distill import teacher_probabilities
from emostream_trainer.training import mixed_targets

from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.trainer.data import write_folder_dataset

pytestmark = pytest.mark.slow  # trains or serves real models for minutes

LABELS = ("happy", "neutral", "fear")


def faces_of_each_class(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic faces of the tiny model's classes 0, 1, 2 (happy, neutral, fear) and those indices."""
    images = np.concatenate([synthetic_faces(i, per_class, seed=21) for i in range(3)])
    return images, np.repeat(np.arange(3), per_class)


def test_teacher_probabilities_follow_the_training_label_order(tmp_path: Path) -> None:
    teacher = export_tiny_version(tmp_path / "teacher", 1)
    images, classes = faces_of_each_class(4)
    reordered = ("fear", "happy", "neutral")  # the training set's own order, not the teacher's
    targets = np.asarray([reordered.index(LABELS[c]) for c in classes])
    probabilities = teacher_probabilities([teacher, teacher], Dataset(images, targets, reordered))
    assert probabilities.shape == (12, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), targets)  # the tiny teacher knows these faces


def test_a_teacher_of_other_classes_is_refused_by_name(tmp_path: Path) -> None:
    teacher = export_tiny_version(tmp_path / "teacher", 1, labels=("happy", "sad", "fear"))
    images, classes = faces_of_each_class(1)
    with pytest.raises(DatasetError, match=r"teacher knows \['happy', 'sad', 'fear'\]") as raised:
        teacher_probabilities([teacher], Dataset(images, classes, LABELS))
    assert str(teacher) in str(raised.value)


def test_mixed_targets_move_one_hot_labels_towards_the_teachers() -> None:
    data = Dataset(np.zeros((2, 48, 48, 1), np.uint8), np.asarray([0, 2]), LABELS)
    soft = np.asarray([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    np.testing.assert_allclose(mixed_targets(data, None, 0.5), [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(mixed_targets(data, soft, 0.5), [[0.8, 0.15, 0.05], [0.1, 0.1, 0.8]])
    with pytest.raises(ValueError, match="shape"):
        mixed_targets(data, soft[:1], 0.5)


def test_train_with_a_teacher_records_it_in_the_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = export_tiny_version(tmp_path / "teacher", 1)
    data = write_folder_dataset(tmp_path / "data", LABELS, 6, seed=3)
    base = tmp_path / "emotion"
    common = [str(data), "--epochs", "1", "--width", "4", "--batch-size", "8", "--float32", "--quiet"]
    args = [*common, "--run-dir", str(tmp_path / "run"), "--model-base", str(base), "--teacher", str(teacher)]
    assert train_command.main([*args, "--distill-weight", "0.7"]) == 0
    card = json.loads((base / "1" / "assets" / "model_card.json").read_text())
    assert card["recipe"]["teachers"] == [str(teacher)] and card["recipe"]["distill_weight"] == 0.7
    assert f"distilling from {teacher}" in capsys.readouterr().out

    assert train_command.main([*args, "--distill-weight", "1.5"]) == 2
    assert "--distill-weight 1.5 is not between 0 and 1" in capsys.readouterr().err
    missing = tmp_path / "no-such-version"
    assert train_command.main([*args[:-1], str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert sorted(p.name for p in base.iterdir()) == ["1"]
