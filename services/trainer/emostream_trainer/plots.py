"""PNG plots: the confusion matrix and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works on servers without a display
import matplotlib.pyplot as plt
import numpy as np


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    figure, axes = plt.subplots(figsize=(1.6 * len(labels) + 2, 1.4 * len(labels) + 1.5))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(labels)):
        for column in range(len(labels)):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(
                column,
                row,
                f"{int(counts[row, column])}\n{shares[row, column]:.0%}",
                ha="center",
                va="center",
                color=colour,
            )
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix (row share)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss and accuracy per epoch, training against validation."""
    epochs = [int(row["epoch"]) + 1 for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
        for prefix in ("", "val_"):
            if history and prefix + key in history[0]:
                axes.plot(epochs, [float(row[prefix + key]) for row in history], label=prefix + key)
        axes.set_xlabel("epoch")
        axes.set_title(key)
    if history and "val_served_accuracy" in history[0]:
        accuracy_axes.plot(epochs, [float(row["val_served_accuracy"]) for row in history], label="val_served_accuracy")
    loss_axes.legend()
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
