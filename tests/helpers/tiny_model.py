"""A real, tiny emotion SavedModel for tests: trained in seconds on synthetic faces, exported by the trainer's code."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emostream import model_repository as repository

if TYPE_CHECKING:
    import keras

SIZE = 48
TRAIN_PER_CLASS = 96
EPOCHS = 8
MAX_ROUNDS = 4

_lock = threading.Lock()
# labels -> folder holding one exported version; copied for every further version.
_exported: dict[tuple[str, ...], Path] = {}


def synthetic_faces(label_index: int, n: int, seed: int, num_classes: int = 3) -> np.ndarray:
    """uint8 [n,48,48,1] images of class `label_index` the tiny model classifies as that class.

    Each class has its own brightness and stripe pattern (horizontal, vertical, or rings),
    all symmetric under a horizontal flip because the served model averages an image with
    its mirror. Phase and noise vary with `seed`.
    """
    if not 0 <= label_index < num_classes:
        raise ValueError(f"label_index {label_index} is not in [0, {num_classes})")
    rng = np.random.default_rng([seed, label_index])
    level = 50.0 + 150.0 * label_index / max(1, num_classes - 1)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    kind = label_index % 3
    if kind == 0:
        wave = np.sin(ys[None] * (2 * np.pi / 8) + phase)
    elif kind == 1:
        wave = np.sin(xs[None] * (2 * np.pi / 8) + phase)
    else:
        wave = np.sin(np.hypot(ys - 23.5, xs - 23.5)[None] * (2 * np.pi / 10) + phase)
    images = level + 40.0 * wave + rng.normal(0.0, 8.0, size=(n, SIZE, SIZE))
    faces: np.ndarray = np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None]
    return faces


def _dataset(num_classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([synthetic_faces(i, per_class, seed, num_classes) for i in range(num_classes)])
    targets = np.repeat(np.arange(num_classes), per_class)
    return images, targets


def _train(num_classes: int) -> keras.Model:
    # keras and TF are imported here so that importing this module (for synthetic_faces) stays cheap.
    import keras
    import tensorflow as tf
    from emostream_trainer.model import make_model
    from emostream_trainer.training import flip_averaged_logits

    keras.utils.set_random_seed(7)
    model = make_model(num_classes, width=4, first_block_convs=2, seed=7, augment=False)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5  # a few dozen steps must be enough for the moving statistics to settle
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images, targets = _dataset(num_classes, TRAIN_PER_CLASS, seed=1)
    check, check_targets = _dataset(num_classes, 16, seed=2)
    for _ in range(MAX_ROUNDS):
        model.fit(images.astype(np.float32), targets, batch_size=32, epochs=EPOCHS, shuffle=True, verbose=0)
        logits = flip_averaged_logits(model, tf.constant(check.astype(np.float32)))
        if np.array_equal(np.argmax(logits.numpy(), axis=1), check_targets):
            return model
    raise AssertionError("the tiny test model did not learn the synthetic classes")


def _export_once(labels: tuple[str, ...]) -> Path:
    import keras
    from emostream_trainer.export import export_version

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # serve float32 whatever a test set before
    try:
        model = _train(len(labels))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    root = Path(tempfile.mkdtemp(prefix="emostream-tiny-model-"))
    atexit.register(shutil.rmtree, root, True)
    card = {"source": "tests.helpers.tiny_model", "labels": list(labels)}
    return Path(export_version(model, list(range(len(labels))), labels, root, card, version=1))


def export_tiny_version(base: Path, version: int, labels: tuple[str, ...] = ("happy", "neutral", "fear")) -> Path:
    """Publish a tiny trained SavedModel as `<base>/<version>`, appearing in one rename like a real export.

    The model is trained once per labels per test session; later versions are copies.
    """
    with _lock:
        if labels not in _exported:
            _exported[labels] = _export_once(labels)
        source = _exported[labels]
    return repository.publish(base, repository.copy_from(source), version=version)
