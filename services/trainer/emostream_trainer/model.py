"""The emotion CNN: a VGG-style stack with batch norm, augmentation as layers."""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (48, 48, 1)


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


def _conv_block(x: keras.KerasTensor, filters: int, convs: int, dropout: float) -> keras.KerasTensor:
    for _ in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D()(x)
    return layers.SpatialDropout2D(dropout)(x) if dropout else x


def make_model(num_classes: int, width: int = 32, seed: int = 0, augment: bool = True) -> keras.Model:
    """Map float images in [0, 1], [N,48,48,1], to class logits [N,num_classes]."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = make_augmenter(seed)(inputs) if augment else inputs
    for level, filters in enumerate((width, width * 2, width * 4, width * 8)):
        x = _conv_block(x, filters, convs=2, dropout=0.1 * level)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(width * 8, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="emotion_vgg")
