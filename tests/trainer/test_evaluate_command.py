"""`emostream evaluate` on a SavedModel folder, a model base (newest or --version), and a live model server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from emostream_modelserver.server import RunningServer, start_server
from emostream_trainer.evaluate_command import main

from tests.helpers.tiny_model import export_tiny_version
from tests.trainer.data import write_folder_dataset

LABELS = ("happy", "neutral", "fear")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": 0.0, "loss": 1.2, "accuracy": 0.4, "val_loss": 1.1, "val_accuracy": 0.5, "val_served_accuracy": 0.5},
    {"epoch": 1.0, "loss": 0.9, "accuracy": 0.6, "val_loss": 0.8, "val_accuracy": 0.7, "val_served_accuracy": 0.7},
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1 and 2 of the tiny model; version 2's card carries a training history."""
    root = tmp_path_factory.mktemp("evaluate") / "emotion"
    export_tiny_version(root, 1, LABELS)
    two = export_tiny_version(root, 2, LABELS)
    card_path = two / "assets" / "model_card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "version": 2, "history": HISTORY}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic faces the tiny model gets right (the seed its training checked), 4 per class."""
    return write_folder_dataset(tmp_path_factory.mktemp("evaluate-data") / "test", LABELS, 4, seed=2)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(argv) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def check_perfect(result: dict[str, object]) -> None:
    assert result["labels"] == list(LABELS)
    assert result["samples"] == 12
    assert result["accuracy"] == 1.0
    assert result["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    per_class = result["per_class"]
    assert isinstance(per_class, dict)
    for label in LABELS:
        assert per_class[label] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 4}
    ece = result["expected_calibration_error"]
    assert isinstance(ece, float) and 0.0 <= ece <= 1.0


def test_saved_model_folder_with_outputs(
    base: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    result = run([str(data), "--saved-model", str(base / "1"), "--out", str(out)], capsys)
    check_perfect(result)
    assert result["model"] == str(base / "1")
    assert json.loads((out / "metrics.json").read_text()) == result
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC
    assert not (out / "training_curves.png").exists()  # version 1's card has no history


def test_newest_version_under_model_base_plots_history(
    base: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    result = run([str(data), "--model-base", str(base), "--out", str(out)], capsys)
    check_perfect(result)
    assert result["model"] == str(base / "2")
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "training_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_given_version_under_model_base(base: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run([str(data), "--model-base", str(base), "--version", "1"], capsys)
    check_perfect(result)
    assert result["model"] == str(base / "1")


@pytest.fixture
def server(base: Path) -> Iterator[RunningServer]:
    running = start_server(base, "emotion", port=0, poll_seconds=0.2)
    try:
        running.wait_until_serving(timeout=60)
        yield running
    finally:
        running.stop(grace=0)


def test_serving_target(
    base: Path,
    data: Path,
    server: RunningServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    target = f"127.0.0.1:{server.port}"
    result = run([str(data), "--serving-target", target, "--model-base", str(base), "--out", str(out)], capsys)
    check_perfect(result)
    assert result["model"] == f"emotion version 2 at {target}"
    assert (out / "training_curves.png").read_bytes()[:8] == PNG_MAGIC  # card of the served version 2


def test_labels_come_from_the_model_so_wrong_data_names_the_folder(
    base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_folder_dataset(tmp_path / "test", ("happy", "neutral"), 2)  # no fear folder
    assert main([str(data), "--saved-model", str(base / "1")]) == 2
    err = capsys.readouterr().err
    assert str(data / "fear") in err and "Traceback" not in err


def test_version_folder_without_labels_or_versions_exits_2(
    base: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty-base"
    empty.mkdir()
    assert main([str(data), "--model-base", str(empty)]) == 2
    assert "no numbered model versions" in capsys.readouterr().err
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(base / "1", unlabelled)
    (unlabelled / "assets" / "labels.txt").unlink()
    assert main([str(data), "--saved-model", str(unlabelled)]) == 2
    assert "labels.txt" in capsys.readouterr().err


def test_missing_saved_model_folder_exits_2(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "no-such-version"
    assert main([str(data), "--saved-model", str(absent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emostream evaluate: ") and str(absent) in err and "Traceback" not in err


def test_absent_version_under_model_base_exits_2(
    base: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(data), "--model-base", str(base), "--version", "9"]) == 2
    err = capsys.readouterr().err
    assert str(base / "9") in err and "Traceback" not in err
