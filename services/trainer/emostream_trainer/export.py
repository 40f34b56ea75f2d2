"""Export a trained model as the next numbered SavedModel version, atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from emostream_trainer.model import INPUT_SHAPE, fold_batch_norm
from emostream_trainer.training import Recipe, build_model, flip_averaged_logits
from emostream_trainer.version_folders import LABELS_FILE, MODEL_CARD, RETIRED, next_version, numbered_versions

__all__ = [
    "LABELS_FILE",
    "MODEL_CARD",
    "RETIRED",
    "export_version",
    "next_version",
    "numbered_versions",
    "write_version",
]


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

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = flip_averaged_logits(model, tf.cast(image, tf.float32) / 255.0)
        return {"probabilities": tf.nn.softmax(tf.gather(logits, indices, axis=1), axis=-1)}

    save_serving_function(serve.get_concrete_function(), target)


def save_serving_function(serve: Any, target: Path) -> None:
    """Save `serve` (a concrete function) as serving_default with exactly the variables it reads.

    Keras' ExportArchive stored every weight twice (its `variables` and `_all_variables` lists).
    """
    root = tf.Module()
    root.weights = list(serve.variables)
    tf.saved_model.save(root, str(target), signatures={"serving_default": serve})


def export_version(
    model: keras.Model,
    indices: list[int],
    labels: tuple[str, ...],
    base: Path,
    card: dict[str, Any],
    version: int | None = None,
) -> Path:
    """Write version `version` (default: newest + 1) under `base`; the folder appears in one rename."""
    return write_version(lambda target: write_saved_model(model, indices, target), labels, base, card, version)


def write_version(
    write: Callable[[Path], None],
    labels: tuple[str, ...],
    base: Path,
    card: dict[str, Any],
    version: int | None = None,
) -> Path:
    """Let `write` fill a staging folder with a SavedModel, add labels and card, then rename it into place."""
    base.mkdir(parents=True, exist_ok=True)
    number = version if version is not None else next_version(base)
    final = base / str(number)
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are never overwritten")
    staging = Path(tempfile.mkdtemp(prefix=f".{number}-", dir=base))
    try:
        write(staging)
        (staging / "assets").mkdir(exist_ok=True)
        (staging / "assets" / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))
        (staging / "assets" / MODEL_CARD).write_text(json.dumps({"version": number, **card}, indent=2) + "\n")
        os.chmod(staging, 0o755)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
