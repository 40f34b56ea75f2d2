"""`emostream deploy`: candidates in TF Serving's model config, the gate at promotion, rollback, listing.

Real SavedModels (the tiny trained model, and an untrained one that guesses), real data folders of
synthetic faces. No model server runs here (the serving target answers nothing), so every config
change is written at once; tests/test_redeploy.py runs the same steps against a live server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from emostream_trainer.deploy_command import DeployError, Place, add_candidate, listing, main, publish, rollback
from emostream_trainer.serving_config import read_roles

from emostream.model_repository import (
    LITERT_INT8_MODEL,
    LITERT_MODEL,
    LITERT_RECORD,
    ModelRepositoryError,
    saved_model_digest,
)
from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.helpers.waiting import free_port

LABELS = ("happy", "neutral", "fear")


def export_untrained_version(base: Path, version: int) -> Path:
    """A real SavedModel of the same contract whose weights were never trained: it guesses."""
    import keras
    from emostream_trainer.export import export_version
    from emostream_trainer.model import make_model

    keras.utils.set_random_seed(3)
    model = make_model(len(LABELS), width=4, first_block_convs=2, seed=3, augment=False)
    card = {"labels": list(LABELS), "source": "untrained"}
    return export_version(model, list(range(len(LABELS))), LABELS, base, card, version=version)


def write_faces(folder: Path, per_class: int, seed: int) -> Path:
    """Class folders of PNG faces the tiny model classifies right, as `emostream evaluate` reads them."""
    for index, label in enumerate(LABELS):
        (folder / label).mkdir(parents=True)
        for i, face in enumerate(synthetic_faces(index, per_class, seed=seed)):
            cv2.imwrite(str(folder / label / f"{i}.png"), face[..., 0])
    return folder


@pytest.fixture
def place(tmp_path: Path) -> Place:
    # Nothing listens at the serving target: deploy writes the config without waiting for a server.
    return Place(tmp_path / "emotion", tmp_path / "models.config", "emotion", f"127.0.0.1:{free_port()}")


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_faces(tmp_path / "validation", 12, seed=21), write_faces(tmp_path / "crops", 8, seed=22)


def deploy(place: Place, *args: str) -> int:
    common = ["--model-base", str(place.base), "--model-config", str(place.config)]
    return main([*common, "--serving-target", place.target, *args])


def test_a_new_version_becomes_the_candidate_not_the_served_one(place: Place) -> None:
    export_tiny_version(place.base, 1, LABELS)
    assert "served" in add_candidate(place, 1)  # nothing served before: the first version serves
    export_tiny_version(place.base, 2, LABELS)
    assert "candidate" in add_candidate(place, 2)
    roles = read_roles(place.config, "emotion")
    assert roles is not None
    assert (roles.labels, roles.loaded) == ({"stable": 1, "canary": 2}, [1, 2])
    export_tiny_version(place.base, 3, LABELS)
    add_candidate(place, 3)  # a newer candidate replaces the old one, which retires
    roles = read_roles(place.config, "emotion")
    assert roles is not None
    assert (roles.labels, roles.loaded) == ({"stable": 1, "canary": 3}, [1, 3])
    assert [(row["version"], row["role"]) for row in listing(place)] == [
        (1, "served"),
        (2, "retired"),
        (3, "candidate"),
    ]


def test_publish_copies_a_folder_in_as_the_candidate(place: Place, tmp_path: Path) -> None:
    export_tiny_version(place.base, 1, LABELS)
    add_candidate(place, 1)
    source = export_tiny_version(tmp_path / "elsewhere", 7, LABELS)
    final, what = publish(source, place)
    assert final == place.base / "2" and "candidate" in what
    assert json.loads((final / "assets" / "model_card.json").read_text())["version"] == 2
    assert sorted(p.name for p in place.base.iterdir()) == ["1", "2"]  # no staging folder left
    with pytest.raises(ModelRepositoryError, match=r"no saved_model\.pb"):
        publish(tmp_path, place)


def test_publish_compiles_the_litert_copy_and_compile_rewrites_it(
    place: Place, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = export_tiny_version(tmp_path / "elsewhere", 1, LABELS)
    shutil.rmtree(source / "assets.extra")  # a SavedModel made elsewhere has no copy
    final, _ = publish(source, place)
    record = json.loads((final / LITERT_RECORD).read_text())
    assert record["source_digest"] == saved_model_digest(final) and record["max_abs_difference"] <= 1e-4
    assert 0 < record["int8_max_abs_difference"] <= 0.02
    (final / LITERT_INT8_MODEL).unlink()
    (final / LITERT_RECORD).unlink()
    assert deploy(place, "compile", "1") == 0
    assert "compiled version 1 for LiteRT" in capsys.readouterr().out
    assert json.loads((final / LITERT_RECORD).read_text())["source_digest"] == saved_model_digest(final)
    assert (final / LITERT_INT8_MODEL).stat().st_size > 0
    assert (final / LITERT_INT8_MODEL).stat().st_size < (final / LITERT_MODEL).stat().st_size / 2
    (final / LITERT_RECORD).unlink()
    assert deploy(place, "compile") == 0  # every version without a current copy
    assert "compiled version 1 for LiteRT" in capsys.readouterr().out
    assert deploy(place, "compile") == 0
    assert capsys.readouterr().out.strip() == "every version has a current LiteRT copy"
    assert deploy(place, "compile", "9") == 2
    assert capsys.readouterr().err.strip().endswith("no version 9")


def test_a_worse_candidate_is_refused_naming_what_is_worse(
    place: Place, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    validation, crops = data
    export_tiny_version(place.base, 1, LABELS)
    add_candidate(place, 1)
    export_untrained_version(place.base, 2)
    add_candidate(place, 2)
    code = deploy(place, "promote", "--validation", str(validation), "--crops", str(crops), "--watch-s", "0")
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1  # one line saying what is worse
    assert "refused: version 2 is worse than served version 1 beyond tolerance on validation accuracy" in err
    assert "detector crops accuracy" in err and "(--force promotes anyway)" in err
    assert "gate: validation (36 faces): accuracy 1.0000 ->" in out
    roles = read_roles(place.config, "emotion")
    assert roles is not None and roles.labels == {"stable": 1, "canary": 2}  # nothing moved
    assert "validation accuracy" in listing(place)[1]["gate"]["worse"][0]
    # --force skips the gate.
    assert deploy(place, "promote", "--force", "--watch-s", "0") == 0
    roles = read_roles(place.config, "emotion")
    assert roles is not None and roles.labels == {"stable": 2}


def test_a_better_candidate_is_promoted_and_rollback_serves_the_old_one_again(
    place: Place, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    validation, crops = data
    export_untrained_version(place.base, 1)
    add_candidate(place, 1)
    export_tiny_version(place.base, 2, LABELS)
    add_candidate(place, 2)
    code = deploy(place, "promote", "--validation", str(validation), "--crops", str(crops), "--watch-s", "0")
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "serving version 2 (label 'stable'); version 1 stays loaded for rollback" in out
    roles = read_roles(place.config, "emotion")
    assert roles is not None and (roles.labels, roles.loaded) == ({"stable": 2}, [1, 2])
    assert [row["role"] for row in listing(place)] == ["previous", "served"]
    assert listing(place)[1]["gate"]["worse"] == []
    assert rollback(place) == (1, 2)
    roles = read_roles(place.config, "emotion")
    assert roles is not None and (roles.labels, roles.loaded) == ({"stable": 1}, [1])
    with pytest.raises(DeployError, match="no version before 1"):
        rollback(place)


def test_promote_needs_validation_data_and_a_candidate(place: Place, capsys: pytest.CaptureFixture[str]) -> None:
    export_tiny_version(place.base, 1, LABELS)
    add_candidate(place, 1)
    assert deploy(place, "promote") == 2
    assert "no candidate to promote" in capsys.readouterr().err
    export_tiny_version(place.base, 2, LABELS)
    add_candidate(place, 2)
    assert deploy(place, "promote", "--watch-s", "0") == 2
    assert "the gate needs validation data" in capsys.readouterr().err


def test_list_prints_roles(place: Place, capsys: pytest.CaptureFixture[str]) -> None:
    export_tiny_version(place.base, 1, LABELS)
    add_candidate(place, 1)
    export_tiny_version(place.base, 2, LABELS)
    add_candidate(place, 2)
    assert deploy(place, "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["role"]) for r in rows] == [(1, "served"), (2, "candidate")]
    assert deploy(place, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [["1", "served", "-"], ["2", "candidate", "-"]]


def test_a_broken_config_file_is_one_line(place: Place, capsys: pytest.CaptureFixture[str]) -> None:
    place.config.write_text("model_config_list { config { name: ")
    assert deploy(place, "list") == 2
    err = capsys.readouterr().err
    assert err.startswith("emostream deploy: ") and "does not parse" in err and err.count("\n") == 1


def test_untrained_helper_really_guesses(place: Place) -> None:
    """The refusal above must come from a worse model, not from a broken one."""
    import tensorflow as tf

    folder = export_untrained_version(place.base, 1)
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    crops = np.concatenate([synthetic_faces(i, 8, seed=5) for i in range(3)])
    probabilities = serve(image=tf.constant(crops))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == np.repeat(np.arange(3), 8)).mean() < 0.9


def test_retire_moves_only_an_unloaded_version_out_of_sight(place: Place, capsys: pytest.CaptureFixture[str]) -> None:
    for version in (1, 2, 3):
        export_tiny_version(place.base, version, LABELS)
        add_candidate(place, version)  # 1 served, 2 retired (unloaded), 3 the candidate
    assert deploy(place, "retire", "3") == 2
    assert "version 3 is candidate" in capsys.readouterr().err
    assert deploy(place, "retire", "2") == 0
    assert "moved to" in capsys.readouterr().out
    assert [row["version"] for row in listing(place)] == [1, 3]
    assert (place.base / ".retired" / "2" / "saved_model.pb").is_file()
    final, _ = publish(place.base / ".retired" / "2", place)
    assert final.name == "4"  # a retired number is never handed out again
