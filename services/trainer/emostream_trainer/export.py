"""Export a trained model as the next numbered SavedModel version, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from emostream import model_repository as repository
from emostream.model_repository import INPUT_KEY, INPUT_SHAPE, OUTPUT_KEY, SIGNATURE_NAME
from emostream_trainer.litert_export import compiling
from emostream_trainer.model import fold_batch_norm
from emostream_trainer.recipe import Recipe
from emostream_trainer.training import build_model, flip_averaged_logits

__all__ = ["export_version", "save_serving_function", "serving_copy"]


def serving_copy(model: keras.Model, num_classes: int, recipe: Recipe) -> keras.Model:
    """The same function in float32 with batch norm folded into the convolutions: no bfloat16 kernels, fewer ops."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_model(recipe, num_classes, folded=True)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    fold_batch_norm(model, copy)
    return copy


def write_saved_model(model: keras.Model, indices: list[int], target: Path) -> None:
    """SavedModel whose serving_default maps uint8 `image` [N,48,48,1] to `probabilities` [N,K]."""

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name=INPUT_KEY)])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = flip_averaged_logits(model, tf.cast(image, tf.float32))
        return {OUTPUT_KEY: tf.nn.softmax(tf.gather(logits, indices, axis=1), axis=-1)}

    save_serving_function(serve.get_concrete_function(), target)


def save_serving_function(serve: Any, target: Path) -> None:
    """Save `serve` (a concrete function) as serving_default with exactly the variables it reads.

    Keras' ExportArchive stored every weight twice (its `variables` and `_all_variables` lists).
    """
    root = tf.Module()
    root.weights = list(serve.variables)
    tf.saved_model.save(root, str(target), signatures={SIGNATURE_NAME: serve})


def export_version(
    model: keras.Model,
    indices: list[int],
    labels: tuple[str, ...],
    base: Path,
    card: dict[str, Any],
    version: int | None = None,
) -> Path:
    """Write version `version` (default: newest + 1) under `base`; the folder appears in one rename."""

    def write(target: Path) -> None:
        write_saved_model(model, indices, target)

    return repository.publish(base, compiling(write), labels=labels, card=card, version=version)
