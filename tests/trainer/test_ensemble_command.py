"""`emostream ensemble`: several versions exported as one SavedModel that serves their mean probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from emostream_modelserver.server import start_server
from emostream_serving.tf_serving import ServingClient, read_labels
from emostream_trainer.ensemble_command import main, write_averaged_saved_model
from emostream_trainer.evaluate_command import read_version_folder, saved_model_predictor

from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.trainer.data import write_folder_dataset
from tests.trainer.test_train_command import saved_weight_count

LABELS = ("happy", "neutral", "fear")


def crops_of_each_class() -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([synthetic_faces(i, 3, seed=50 + i) for i in range(3)])
    return images, np.repeat(np.arange(3), 3)


def reordered_copy(member: Path, labels: tuple[str, ...], folder: Path) -> Path:
    """The same model with its outputs in another label order, as a version folder."""
    write_averaged_saved_model([member], labels, folder)
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    return folder


def test_members_in_another_label_order_are_aligned_before_averaging(tmp_path: Path) -> None:
    member = export_tiny_version(tmp_path / "a", 1)
    shuffled = reordered_copy(member, ("fear", "happy", "neutral"), tmp_path / "shuffled")
    images, _ = crops_of_each_class()
    alone = saved_model_predictor(member)(images)
    np.testing.assert_allclose(saved_model_predictor(shuffled)(images), alone[:, [2, 0, 1]], atol=1e-6)
    write_averaged_saved_model([member, shuffled], LABELS, tmp_path / "mean")
    np.testing.assert_allclose(saved_model_predictor(tmp_path / "mean")(images), alone, atol=1e-6)


def test_ensemble_exports_a_served_version_with_members_and_score_in_its_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = export_tiny_version(tmp_path / "a", 1), export_tiny_version(tmp_path / "b", 4)
    validation = write_folder_dataset(tmp_path / "validation", LABELS, 4, seed=9)
    base = tmp_path / "emotion"
    assert main([str(first), str(second), "--validation", str(validation), "--model-base", str(base)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["exported"] == str(base / "1")
    labels, card = read_version_folder(base / "1")
    assert labels == LABELS
    assert [member["folder"] for member in card["ensemble_of"]] == [str(first), str(second)]
    assert card["validation_accuracy"] == printed["validation_scores"]["accuracy"] == 1.0
    assert not [p.name for p in base.iterdir() if p.name != "1"]  # no staging folder left behind
    assert saved_weight_count(base / "1") == saved_weight_count(first) + saved_weight_count(second)

    server = start_server(base, "emotion", port=0, poll_seconds=0.2)
    try:
        server.wait_until_serving(timeout=30)
        with ServingClient(f"127.0.0.1:{server.port}", "emotion", timeout_seconds=10.0) as client:
            client.wait_ready(timeout=10)
            images, expected = crops_of_each_class()
            prediction = client.predict(images)
    finally:
        server.stop(grace=0)
    assert prediction.model_version == 1 and read_labels(base, 1) == LABELS
    np.testing.assert_array_equal(prediction.probabilities.argmax(axis=1), expected)
    np.testing.assert_allclose(prediction.probabilities, saved_model_predictor(first)(images), atol=1e-6)


def test_one_member_or_different_classes_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member = export_tiny_version(tmp_path / "a", 1)
    other = export_tiny_version(tmp_path / "b", 1, labels=("happy", "sad", "fear"))
    base = tmp_path / "emotion"
    assert main([str(member), "--model-base", str(base)]) == 2
    assert "at least two versions" in capsys.readouterr().err
    assert main([str(member), str(other), "--model-base", str(base)]) == 2
    error = capsys.readouterr().err
    assert str(other) in error and "['happy', 'sad', 'fear']" in error
    assert not base.exists()
