"""A real SavedModel with the serving contract that refuses or garbles chosen crops, to test how clients cope.

A crop that is all 255 fails a `tf.debugging.Assert` (InvalidArgumentError, which TF Serving reports as
INVALID_ARGUMENT); a crop that is all 7 gets NaN probabilities. Any other crop gets a softmax of its
mean brightness, so answers are plain probabilities.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

REFUSED_VALUE = 255
NAN_VALUE = 7


class PoisonModel(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.uint8, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        low = tf.reduce_min(image, axis=[1, 2, 3])
        high = tf.reduce_max(image, axis=[1, 2, 3])
        refused = tf.logical_and(tf.equal(low, REFUSED_VALUE), tf.equal(high, REFUSED_VALUE))
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(refused)), ["a crop the model refuses"])
        with tf.control_dependencies([check]):
            mean = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2, 3]) / 255.0
            logits = tf.stack([mean, 1.0 - mean, tf.fill(tf.shape(mean), 0.5)], axis=1)
            garbled = tf.logical_and(tf.equal(low, NAN_VALUE), tf.equal(high, NAN_VALUE))
            nan = tf.fill(tf.shape(logits), float("nan"))
            probabilities = tf.where(garbled[:, None], nan, tf.nn.softmax(logits))
        return {"probabilities": probabilities}


def export_poison_version(base: Path, version: int, labels: tuple[str, ...] = ("happy", "neutral", "fear")) -> Path:
    """Save the poison model as `base/version` with its labels."""
    module = PoisonModel()
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "labels.txt").write_text("\n".join(labels) + "\n")
    return path
