"""The model repository's folder layout: numbering, labels, cards, one-rename publish and retire.

These tests exercise folders only, which is all the module touches; tests/trainer and
tests/modelserver publish and serve real SavedModels through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emostream import model_repository as repository
from emostream.model_repository import ModelRepositoryError

LABELS = ("happy", "neutral", "fear")


def write_model(folder: Path) -> None:
    """Stands in for a SavedModel export: the repository only checks that saved_model.pb is there."""
    (folder / repository.SAVED_MODEL_FILE).write_bytes(b"graph")


def test_versions_count_retired_ones_and_skip_staging(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    for version in (1, 2, 3):
        repository.publish(base, write_model, labels=LABELS, version=version)
    (base / ".4-staging").mkdir()
    (base / "5").mkdir()  # a folder still being copied by hand: numbered, not servable
    repository.retire(base, 3)
    assert repository.numbered_versions(base) == [1, 2, 5]
    assert repository.servable_versions(base) == [2, 1]
    assert repository.retired_versions(base) == [3]
    assert repository.next_version(base) == 6
    assert repository.next_version(tmp_path / "nothing") == 1


def test_publish_writes_labels_and_a_card_naming_the_version(tmp_path: Path) -> None:
    final = repository.publish(tmp_path, write_model, labels=LABELS, card={"source": "test", "version": 99})
    assert final == tmp_path / "1"
    assert repository.read_labels(final) == LABELS
    assert repository.read_card(final) == {"source": "test", "version": 1}
    copy = repository.publish(tmp_path, repository.copy_from(final))
    assert repository.read_card(copy)["version"] == 2 and repository.read_labels(copy) == LABELS


def test_a_failed_publish_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(staging: Path) -> None:
        write_model(staging)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        repository.publish(tmp_path, broken, labels=LABELS)
    with pytest.raises(ModelRepositoryError, match=r"no saved_model\.pb"):
        repository.publish(tmp_path, lambda staging: None, labels=LABELS)
    assert list(tmp_path.iterdir()) == []


def test_a_version_is_never_overwritten(tmp_path: Path) -> None:
    repository.publish(tmp_path, write_model, version=1)
    repository.retire(tmp_path, 1)
    with pytest.raises(ModelRepositoryError, match="exists already"):
        repository.publish(tmp_path, write_model, version=1)
    with pytest.raises(ModelRepositoryError, match="no version 1"):
        repository.retire(tmp_path, 1)


def test_labels_and_cards_fail_with_one_error_naming_the_file(tmp_path: Path) -> None:
    folder = repository.publish(tmp_path, write_model, labels=("",), card={})
    with pytest.raises(ModelRepositoryError, match=r"version 1: .*1/assets/labels\.txt is empty"):
        repository.read_labels(folder)
    (folder / "assets" / "labels.txt").unlink()
    with pytest.raises(ModelRepositoryError, match=r"version 1: .*1/assets/labels\.txt does not exist"):
        repository.read_labels(folder)
    (folder / "assets" / "model_card.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ModelRepositoryError, match="must be a JSON object"):
        repository.read_card(folder)
    (folder / "assets" / "model_card.json").unlink()
    assert repository.read_card(folder) == {}


def test_the_repository_and_deploy_list_never_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from emostream_trainer.deploy_command import main\n"
        f"main(['--model-base', {str(tmp_path)!r}, 'list'])\n"
        "assert 'tensorflow' not in sys.modules, 'deploy list imported TensorFlow'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["version", "role", "validation", "gate"]
