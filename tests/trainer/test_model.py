"""The network's shape knobs and its serving form (float32, batch norm folded into the convolutions)."""

from __future__ import annotations

import keras
import numpy as np
from emostream_trainer.export import serving_copy
from emostream_trainer.model import make_model
from emostream_trainer.recipe import Recipe


def test_first_block_convs_sets_the_full_resolution_convolutions() -> None:
    def convs_at_48(model: keras.Model) -> int:
        return sum(isinstance(layer, keras.layers.Conv2D) and layer.output.shape[1] == 48 for layer in model.layers)

    assert convs_at_48(make_model(3, width=4, first_block_convs=1, augment=False)) == 1
    assert convs_at_48(make_model(3, width=4, first_block_convs=2, augment=False)) == 2


def test_serving_copy_folds_batch_norm_without_changing_the_logits() -> None:
    recipe = Recipe(width=4, first_block_convs=1, seed=3)
    trained = make_model(3, width=4, first_block_convs=1, seed=3)
    rng = np.random.default_rng(0)
    for layer in trained.layers:  # statistics far from the identity, as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            gamma, beta = rng.uniform(0.5, 1.5, n), rng.normal(0.0, 0.2, n)
            layer.set_weights([gamma, beta, rng.normal(0.0, 0.2, n), rng.uniform(0.5, 2.0, n)])
    copy = serving_copy(trained, 3, recipe)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in copy.layers)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in copy.layers)
    images = rng.uniform(0.0, 255.0, size=(6, 48, 48, 1)).astype(np.float32)  # pixel values: the model rescales
    expected = trained(images, training=False).numpy()
    np.testing.assert_allclose(copy(images).numpy(), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(expected, expected[:1])  # the comparison is between different outputs, not constants


def test_the_model_takes_pixel_values_and_rescales_them_itself() -> None:
    model = make_model(3, width=4, first_block_convs=1, augment=False)
    assert model.layers[1].name == "rescale" and model.layers[1].scale == 1 / 255
    inner = keras.Model(model.input, model.get_layer("rescale").output)
    pixels = np.array([0.0, 51.0, 255.0], np.float32).reshape(3, 1, 1, 1) * np.ones((3, 48, 48, 1), np.float32)
    np.testing.assert_allclose(inner(pixels).numpy()[:, 0, 0, 0], [0.0, 0.2, 1.0], rtol=1e-6)


def test_the_cli_defaults_are_the_recipe_defaults() -> None:
    import argparse

    from emostream_trainer import recipe as recipes

    parser = argparse.ArgumentParser()
    recipes.add_recipe_arguments(parser)
    parsed = recipes.flagged_values(parser.parse_args([]))
    assert parsed == {name: getattr(Recipe(), name) for name in parsed}
    assert {"width", "first_block_convs", "epochs", "seed"} <= set(parsed)
    assert recipes.flagged_values(parser.parse_args(["--first-block-convs", "1"]))["first_block_convs"] == 1
