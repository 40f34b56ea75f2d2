"""The emotion CNN: a VGG-style stack with batch norm, augmentation as layers."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from emostream.model_repository import INPUT_KEY, INPUT_SHAPE


def make_augmenter(seed: int) -> keras.Sequential:
    """Random shift, zoom, rotation, flip and erasing; active only in training."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
            layers.RandomRotation(0.04, fill_mode="nearest", seed=seed + 2),
            layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 3),
            layers.RandomErasing(factor=0.5, scale=(0.02, 0.15), value_range=(0.0, 1.0), seed=seed + 4),
        ],
        name="augment",
    )


def _conv_block(x: keras.KerasTensor, filters: int, convs: int, dropout: float, folded: bool) -> keras.KerasTensor:
    for _ in range(convs):
        if folded:  # batch norm folded into the kernel and bias: what serving runs
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            continue
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D()(x)
    return layers.SpatialDropout2D(dropout)(x) if dropout and not folded else x


def make_model(
    num_classes: int,
    *,
    width: int,
    first_block_convs: int,
    seed: int = 0,
    augment: bool = True,
    folded: bool = False,
) -> keras.Model:
    """Map pixel values in [0, 255], [N,48,48,1], to class logits [N,num_classes]; the model rescales them.

    The first block works at the full 48x48: each of its convolutions costs as much time as a whole later
    block, so `first_block_convs=1` is the cheap way to serve within budget. `folded=True` builds the
    inference form (no augmentation, dropout or batch norm layers) that `fold_batch_norm` fills.
    """
    inputs = keras.Input(INPUT_SHAPE, name=INPUT_KEY)
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)  # the one place pixels become [0, 1]
    x = make_augmenter(seed)(x) if augment and not folded else x
    for level, filters in enumerate((width, width * 2, width * 4, width * 8)):
        convs = first_block_convs if level == 0 else 2
        x = _conv_block(x, filters, convs, dropout=0.0 if folded else 0.1 * level, folded=folded)
    x = layers.GlobalAveragePooling2D()(x)
    x = x if folded else layers.Dropout(0.4)(x)
    x = layers.Dense(width * 8, activation="relu")(x)
    x = x if folded else layers.Dropout(0.3)(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="emotion_vgg")


def fold_batch_norm(trained: keras.Model, folded: keras.Model) -> None:
    """Copy `trained` into its `folded` form: each convolution absorbs the batch norm after it (exact at inference)."""

    def of_type(model: keras.Model, kind: type[keras.Layer]) -> list[keras.Layer]:
        return [layer for layer in model.layers if isinstance(layer, kind)]

    convs, norms = of_type(trained, layers.Conv2D), of_type(trained, layers.BatchNormalization)
    targets = of_type(folded, layers.Conv2D)
    if not len(convs) == len(norms) == len(targets):
        raise ValueError("the folded model does not have the trained model's convolutions")
    for conv, norm, target in zip(convs, norms, targets, strict=True):
        gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in norm.get_weights())
        scale = gamma / np.sqrt(variance + norm.epsilon)
        kernel = np.asarray(conv.get_weights()[0], np.float64) * scale
        target.set_weights([kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)])
    for source, target in zip(of_type(trained, layers.Dense), of_type(folded, layers.Dense), strict=True):
        target.set_weights(source.get_weights())
