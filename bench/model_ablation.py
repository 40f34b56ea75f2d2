"""What test-time flip averaging gains: a training run's best weights scored with and without it.

    uv run python bench/model_ablation.py runs/latest [--data ../shared/data/fer2013/validation]

Prints validation accuracy and per-class recall over the served labels, both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from emostream_trainer.dataset import FER_CLASSES, load
from emostream_trainer.model import make_model
from emostream_trainer.training import serve_indices


def scores(logits: np.ndarray, expected: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    predicted = logits.argmax(axis=1)
    recall = {
        f"recall_{label}": round(float((predicted[expected == i] == i).mean()), 4) for i, label in enumerate(labels)
    }
    return {"accuracy": round(float((predicted == expected).mean()), 4), **recall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument(
        "--trained-on",
        choices=("served", "all"),
        default="served",
        help="for runs whose recipe.json predates `trained_labels`",
    )
    args = parser.parse_args()
    recipe = json.loads((args.run_dir / "recipe.json").read_text())
    served = tuple(recipe["serve_labels"])
    parser_default = FER_CLASSES if args.trained_on == "all" else served
    trained = tuple(recipe.get("trained_labels", parser_default))
    model = make_model(len(trained), width=recipe["width"], augment=True)
    model.load_weights(str(args.run_dir / "best.weights.h5"))
    data = load(args.data, served)
    images = tf.constant(data.images.astype(np.float32) / 255.0)
    indices = serve_indices(trained, served)
    plain = tf.gather(model.predict(images, batch_size=256, verbose=0), indices, axis=1).numpy()
    mirrored = tf.gather(
        model.predict(tf.image.flip_left_right(images), batch_size=256, verbose=0), indices, axis=1
    ).numpy()
    print(
        json.dumps(
            {
                "run": str(args.run_dir),
                "without_flip": scores(plain, data.targets, served),
                "with_flip_average": scores((plain + mirrored) / 2, data.targets, served),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
