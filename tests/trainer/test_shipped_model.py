"""The model shipped in models/emotion: the newest version honours the model contract and the size limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emostream.model_repository import LITERT_RECORD, litert_problem, numbered_versions

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "emotion"


def test_newest_shipped_version_serves_the_contract() -> None:
    import tensorflow as tf

    versions = numbered_versions(SHIPPED)
    assert versions, f"no model version under {SHIPPED}"
    folder = SHIPPED / str(versions[-1])
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size < 20 * 1024 * 1024, f"{folder} is {size / 2**20:.1f} MB"
    labels = (folder / "assets" / "labels.txt").read_text().split()
    assert labels == ["happy", "neutral", "fear"]
    card = json.loads((folder / "assets" / "model_card.json").read_text())
    assert card["version"] == versions[-1] and card["labels"] == labels
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    crops = np.random.default_rng(0).integers(0, 256, size=(5, 48, 48, 1), dtype=np.uint8)
    probabilities = serve(image=tf.constant(crops))["probabilities"].numpy()
    assert probabilities.shape == (5, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    mirrored = serve(image=tf.constant(crops[:, :, ::-1]))["probabilities"].numpy()
    np.testing.assert_allclose(mirrored, probabilities, atol=1e-5)  # flip averaging is inside the graph


def test_every_shipped_version_carries_a_current_litert_copy() -> None:
    """scripts/setup.sh builds the copies the model server's default runtime serves, each from its own SavedModel."""
    for version in numbered_versions(SHIPPED):
        assert litert_problem(SHIPPED / str(version)) is None
        record = json.loads((SHIPPED / str(version) / LITERT_RECORD).read_text())
        assert record["max_abs_difference"] <= 1e-4 and record["int8_max_abs_difference"] <= 0.02


def test_training_with_defaults_is_the_recipe_of_the_shipped_model() -> None:
    """`emostream train DATA` with no other flag retrains what is served: same network and schedule."""
    import argparse
    from dataclasses import asdict

    from emostream_trainer.train_command import add_arguments, recipe_of

    card = json.loads((SHIPPED / "2" / "assets" / "model_card.json").read_text())
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["data"])
    recipe = asdict(recipe_of(args, tuple(args.labels.split(","))))
    shipped = {k: tuple(v) if isinstance(v, list) else v for k, v in card["recipe"].items()}
    # mixed precision follows the CPU (bfloat16 where it computes it natively); everything else must match
    recipe.pop("mixed_precision")
    shipped.pop("mixed_precision")
    assert recipe == shipped
