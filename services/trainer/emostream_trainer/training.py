"""Fit the emotion CNN: tf.data input, AdamW with a cosine schedule, checkpoints that resume."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from emostream_trainer.dataset import Dataset
from emostream_trainer.model import make_model
from emostream_trainer.recipe import Recipe


def configure(recipe: Recipe) -> None:
    """Seed every generator and pick the compute precision before a model is built."""
    keras.utils.set_random_seed(recipe.seed)
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if recipe.mixed_precision else "float32")


def build_model(recipe: Recipe, num_classes: int, augment: bool = True, folded: bool = False) -> keras.Model:
    return make_model(
        num_classes,
        width=recipe.width,
        first_block_convs=recipe.first_block_convs,
        seed=recipe.seed,
        augment=augment,
        folded=folded,
    )


def serve_indices(train_labels: tuple[str, ...], serve_labels: tuple[str, ...]) -> list[int]:
    missing = [label for label in serve_labels if label not in train_labels]
    if missing:
        raise ValueError(f"served label(s) {missing} are not among the trained labels {list(train_labels)}")
    return [train_labels.index(label) for label in serve_labels]


def flip_averaged_logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """Mean of the logits for the image and its mirror: the test-time augmentation served too."""
    return (model(images, training=False) + model(tf.image.flip_left_right(images), training=False)) / 2.0


class ServedAccuracy(keras.callbacks.Callback):
    """Adds val_served_accuracy: flip-averaged accuracy over the served classes only."""

    def __init__(self, validation: Dataset, indices: list[int], batch_size: int = 256) -> None:
        super().__init__()
        keep = np.isin(validation.targets, indices)
        self.images = validation.images[keep].astype(np.float32)
        self.expected = np.asarray([indices.index(int(t)) for t in validation.targets[keep]])
        self.indices = indices
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        predicted = predict_served(self.model, self.images, self.indices, self.batch_size)
        if logs is not None:
            logs["val_served_accuracy"] = float(np.mean(predicted == self.expected))


def predict_served(model: keras.Model, images: np.ndarray, indices: list[int], batch_size: int) -> np.ndarray:
    """Index into `indices` of the most likely served class for each image (pixel values 0-255, as float)."""
    picks: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        logits = flip_averaged_logits(model, tf.constant(images[start : start + batch_size]))
        picks.append(np.argmax(tf.gather(logits, indices, axis=1).numpy(), axis=1))
    return np.concatenate(picks)


def mixed_targets(data: Dataset, soft_targets: np.ndarray | None, distill_weight: float) -> np.ndarray:
    """One-hot labels, moved `distill_weight` of the way towards the teachers' probabilities when there are any."""
    onehot = np.eye(len(data.labels), dtype=np.float32)[data.targets]
    if soft_targets is None:
        return onehot
    if soft_targets.shape != onehot.shape:
        raise ValueError(f"soft targets have shape {soft_targets.shape}, the labels {onehot.shape}")
    mixed: np.ndarray = (1.0 - distill_weight) * onehot + distill_weight * soft_targets.astype(np.float32)
    return mixed


def _dataset(
    data: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    weights: np.ndarray | None,
    soft_targets: np.ndarray | None = None,
    distill_weight: float = 0.0,
) -> tf.data.Dataset:
    images = data.images.astype(np.float32)
    parts: tuple[np.ndarray, ...] = (images, mixed_targets(data, soft_targets, distill_weight))
    if weights is not None:
        parts = (*parts, weights[data.targets].astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def balanced_weights(data: Dataset, power: float = 1.0) -> np.ndarray:
    """Per-class loss weights: inverse class frequency raised to `power` (1 balances fully, 0.5 half-way in log).

    A power below 1 keeps a tiny class (disgust: 436 of 28,709 faces when training on all seven) from
    carrying a whole class's share of the loss on a handful of images.
    """
    counts = np.bincount(data.targets, minlength=len(data.labels)).astype(np.float64)
    weights: np.ndarray = (len(data) / (len(data.labels) * np.maximum(counts, 1.0))) ** power
    return weights


def train(
    train_data: Dataset,
    validation: Dataset,
    recipe: Recipe,
    run_dir: Path,
    verbose: int = 1,
    soft_targets: np.ndarray | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.Model:
    """Train, resuming from `run_dir` if a run there was interrupted; return the best model.

    `soft_targets` (teacher probabilities, [N, classes]) are mixed into the labels by `recipe.distill_weight`.
    `callbacks` run before the trainer's own at every step (a test stops a run with one).
    """
    configure(recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "backup").exists():  # a fresh run, not a resumed one: start its records anew
        for stale in ("history.csv", "best.weights.h5"):
            (run_dir / stale).unlink(missing_ok=True)
    recipe_record = {**asdict(recipe), "trained_labels": list(train_data.labels)}
    (run_dir / "recipe.json").write_text(json.dumps(recipe_record, indent=2))
    indices = serve_indices(train_data.labels, recipe.serve_labels)
    model = build_model(recipe, len(train_data.labels))
    steps = math.ceil(len(train_data) / recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, steps * (recipe.epochs - recipe.warmup_epochs)),
        warmup_target=recipe.learning_rate,
        warmup_steps=steps * recipe.warmup_epochs,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
    )
    weights = balanced_weights(train_data, recipe.class_weight_power) if recipe.class_weights else None
    best = run_dir / "best.weights.h5"
    model.fit(
        _dataset(train_data, recipe.batch_size, True, recipe.seed, weights, soft_targets, recipe.distill_weight),
        validation_data=_dataset(validation, 256, False, recipe.seed, None),
        epochs=recipe.epochs,
        verbose=verbose,
        callbacks=[
            *callbacks,
            ServedAccuracy(validation, indices),
            keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
            keras.callbacks.ModelCheckpoint(
                str(best), monitor="val_served_accuracy", mode="max", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        ],
    )
    if best.exists():
        model.load_weights(str(best))
    return model
