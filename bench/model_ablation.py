"""What test-time flip averaging and ensembling gain: training runs' best weights scored each way.

    uv run python bench/model_ablation.py runs/served40 [runs/all30 ...] [--data ../shared/data/fer2013/validation]

Prints, per run, validation accuracy and per-class recall over the served labels with and
without flip averaging; with several runs, also the mean of their probabilities each way (an
ensemble of two runs without flip costs as many passes as one run with it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from emostream_trainer.dataset import Dataset, load
from emostream_trainer.metrics import summary
from emostream_trainer.recipe import read_recipe
from emostream_trainer.training import build_model, serve_indices


def served_probabilities(run_dir: Path, images: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over the served classes for the images, without and with flip averaging of the logits."""
    recipe, trained = read_recipe(run_dir)
    model = build_model(recipe, len(trained))
    model.load_weights(str(run_dir / "best.weights.h5"))
    indices = serve_indices(trained, recipe.serve_labels)
    plain = tf.gather(model.predict(images, batch_size=256, verbose=0), indices, axis=1)
    mirrored = tf.gather(model.predict(tf.image.flip_left_right(images), batch_size=256, verbose=0), indices, axis=1)
    return tf.nn.softmax(plain).numpy(), tf.nn.softmax((plain + mirrored) / 2).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    args = parser.parse_args()
    served = read_recipe(args.run_dirs[0])[0].serve_labels
    data: Dataset = load(args.data, served)
    images = tf.constant(data.images.astype(np.float32))
    plains, averaged = [], []
    for run_dir in args.run_dirs:
        plain, flipped = served_probabilities(run_dir, images)
        plains.append(plain)
        averaged.append(flipped)
        report = {
            "run": str(run_dir),
            "without_flip": summary(plain, data.targets, served),
            "with_flip_average": summary(flipped, data.targets, served),
        }
        print(json.dumps(report), flush=True)
    if len(averaged) > 1:
        report = {
            "ensemble": [str(r) for r in args.run_dirs],
            "without_flip": summary(np.mean(plains, axis=0), data.targets, served),
            "with_flip_average": summary(np.mean(averaged, axis=0), data.targets, served),
        }
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
