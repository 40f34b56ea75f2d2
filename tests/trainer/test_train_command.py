"""`emostream train` end to end on a tiny synthetic dataset: versions, contract, card, errors, determinism, resume."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from emostream_trainer import train_command
from emostream_trainer.dataset import FER_CLASSES

from tests.helpers.tiny_model import synthetic_faces
from tests.trainer.data import write_folder_dataset

pytestmark = pytest.mark.slow  # trains or serves real models for minutes

LABELS = ("happy", "neutral", "fear")
TINY = ["--epochs", "1", "--width", "4", "--batch-size", "8", "--float32", "--quiet", "--seed", "5"]


def train(data: Path, run_dir: Path, base: Path, *extra: str) -> int:
    return train_command.main([str(data), *TINY, "--run-dir", str(run_dir), "--model-base", str(base), *extra])


@dataclass(frozen=True)
class TwoRuns:
    data: Path
    base: Path
    runs: tuple[Path, Path]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """Two identical trainings (same seed, fresh run dirs) exported into one model base: versions 1 and 2."""
    root = tmp_path_factory.mktemp("train")
    data = write_folder_dataset(root / "data", LABELS, 10, seed=3)
    base = root / "models" / "emotion"
    runs = (root / "run1", root / "run2")
    for run in runs:
        assert train(data, run, base, "--train-on", "served") == 0
    return TwoRuns(data, base, runs)


def serving_default(folder: Path):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    return tf.saved_model.load(str(folder)).signatures["serving_default"]


def probe_images() -> np.ndarray:
    return np.concatenate([synthetic_faces(i, 3, seed=11) for i in range(3)])


def test_each_run_exports_the_next_version_atomically(two_runs: TwoRuns) -> None:
    assert sorted(p.name for p in two_runs.base.iterdir()) == ["1", "2"]  # no staging folder left behind
    for version in (1, 2):
        folder = two_runs.base / str(version)
        assert (folder / "saved_model.pb").is_file()
        assert (folder / "variables").is_dir()
        assert (folder / "assets" / "labels.txt").read_text() == "happy\nneutral\nfear\n"
        card = json.loads((folder / "assets" / "model_card.json").read_text())
        assert card["version"] == version
        assert card["labels"] == list(LABELS) and card["trained_on"] == list(LABELS)
        assert card["recipe"]["epochs"] == 1 and card["recipe"]["width"] == 4
        assert card["recipe"]["mixed_precision"] is False and card["recipe"]["seed"] == 5
        assert 0.0 <= card["validation_accuracy"] <= 1.0
        assert isinstance(card["code_revision"], str) and card["code_revision"]
        assert isinstance(card["history"], list) and len(card["history"]) == 1
        columns = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_served_accuracy"}
        assert columns <= set(card["history"][0])
    for run in two_runs.runs:
        assert (run / "recipe.json").is_file() and (run / "history.csv").is_file()
        assert not (run / "backup").exists()  # removed once training completed


def test_saved_model_signature_contract(two_runs: TwoRuns) -> None:
    import tensorflow as tf

    serve = serving_default(two_runs.base / "1")
    ((name, spec),) = serve.structured_input_signature[1].items()
    assert name == "image" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 48, 48, 1]
    assert list(serve.structured_outputs) == ["probabilities"]
    probabilities = serve(image=tf.constant(probe_images()))["probabilities"]
    assert probabilities.dtype == tf.float32 and probabilities.shape == (9, 3)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(probabilities.numpy() >= 0)


def saved_weight_count(folder: Path) -> int:
    """Numbers stored in a SavedModel's variables checkpoint."""
    import tensorflow as tf

    shapes = tf.train.load_checkpoint(str(folder / "variables" / "variables")).get_variable_to_shape_map()
    return sum(int(np.prod(shape)) for key, shape in shapes.items() if key != "_CHECKPOINTABLE_OBJECT_GRAPH")


def test_each_weight_is_saved_once(two_runs: TwoRuns) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(two_runs.base / "1"))  # held: its variables live as long as it does
    read = sum(int(np.prod(variable.shape)) for variable in loaded.signatures["serving_default"].variables)
    assert read > 0 and saved_weight_count(two_runs.base / "1") == read


def test_same_seed_gives_identical_weights_and_probabilities(two_runs: TwoRuns) -> None:
    import tensorflow as tf

    first, second = (serving_default(two_runs.base / str(v)) for v in (1, 2))
    images = tf.constant(probe_images())
    p1, p2 = first(image=images)["probabilities"].numpy(), second(image=images)["probabilities"].numpy()
    # On CPU with op determinism the runs are bit-identical.
    np.testing.assert_array_equal(p1, p2)

    def weights(run: Path) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with h5py.File(run / "best.weights.h5", "r") as handle:
            handle.visititems(
                lambda key, item: found.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        return found

    w1, w2 = (weights(run) for run in two_runs.runs)
    assert w1.keys() == w2.keys() and len(w1) > 10
    for key in w1:
        np.testing.assert_array_equal(w1[key], w2[key], err_msg=key)


def test_train_on_all_seven_serves_the_chosen_three(tmp_path: Path) -> None:
    data = write_folder_dataset(tmp_path / "data", FER_CLASSES, 5, seed=4)
    base = tmp_path / "emotion"
    assert train(data, tmp_path / "run", base, "--train-on", "all", "--labels", "fear,happy,neutral") == 0
    folder = base / "1"
    assert (folder / "assets" / "labels.txt").read_text().split() == ["fear", "happy", "neutral"]
    card = json.loads((folder / "assets" / "model_card.json").read_text())
    assert card["trained_on"] == list(FER_CLASSES) and card["labels"] == ["fear", "happy", "neutral"]
    assert card["recipe"]["class_weight_power"] == 0.5  # disgust's few faces must not carry a seventh of the loss
    import tensorflow as tf

    probabilities = serving_default(folder)(image=tf.constant(probe_images()))["probabilities"].numpy()
    assert probabilities.shape == (9, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("problem", ["garbage", "size", "missing_class", "unknown_label"])
def test_bad_data_exits_2_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    data = write_folder_dataset(tmp_path / "data", LABELS, 3)
    extra: list[str] = ["--train-on", "served"]
    if problem == "garbage":
        culprit = data / "fear" / "bad.jpg"
        culprit.write_bytes(b"this is no jpeg")
        expected = str(culprit)
    elif problem == "size":
        from tests.trainer.data import write_image

        culprit = write_image(data / "happy" / "wide.png", np.zeros((48, 64), np.uint8))
        expected = str(culprit)
    elif problem == "missing_class":
        extra = ["--train-on", "all"]  # needs all seven class folders
        expected = str(data / "angry")
    else:  # all seven classes are there, but a served label is not one of them
        data = write_folder_dataset(tmp_path / "seven", FER_CLASSES, 1)
        extra = ["--train-on", "all", "--labels", "happy,joy"]
        expected = "joy"
    base = tmp_path / "emotion"
    assert train(data, tmp_path / "run", base, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("emostream train: ") and expected in err and "Traceback" not in err
    assert not base.exists()


class Interrupted(Exception):
    """Stands in for a crash or a kill between epochs."""


def epochs_logged(run_dir: Path) -> list[int]:
    with (run_dir / "history.csv").open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_rerun_resumes_an_interrupted_run(tmp_path: Path) -> None:
    """Epoch 0 completes, the run dies at the start of epoch 1; the rerun does only epoch 1."""
    import keras

    data = write_folder_dataset(tmp_path / "data", LABELS, 6, seed=2)
    run_dir = tmp_path / "run"

    class DieAtEpoch1(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            if epoch == 1:
                raise Interrupted

    args = [str(data), *TINY, "--epochs", "2", "--train-on", "served", "--run-dir", str(run_dir), "--no-export"]
    with pytest.raises(Interrupted):
        train_command.main(args, callbacks=[DieAtEpoch1()])
    assert epochs_logged(run_dir) == [0]
    backup = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert backup["epoch"] == 1
    assert train_command.main(args) == 0
    assert epochs_logged(run_dir) == [0, 1]  # continued at epoch 1 rather than starting over at 0
    assert not (run_dir / "backup").exists()


def test_read_recipe_takes_runs_from_before_the_first_block_knob(tmp_path: Path) -> None:
    from emostream_trainer.recipe import read_recipe

    record = {"width": 32, "seed": 1337, "serve_labels": list(LABELS), "trained_labels": list(LABELS)}
    (tmp_path / "recipe.json").write_text(json.dumps(record))
    recipe, trained = read_recipe(tmp_path)
    assert (recipe.width, recipe.first_block_convs, recipe.serve_labels, trained) == (32, 2, LABELS, LABELS)
