"""What serving in bfloat16 would save: a run's best weights timed and scored in float32 and mixed bfloat16.

    uv run python bench/serving_precision.py runs/served40 [--data ../shared/data/fer2013/validation]

In process (no gRPC), with the flip averaging the exported graph does; prints ms per face at
batch 32 and validation accuracy for each compute policy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from emostream_trainer.dataset import load
from emostream_trainer.recipe import read_recipe
from emostream_trainer.training import build_model, flip_averaged_logits, serve_indices


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    recipe, trained = read_recipe(args.run_dir)
    served = recipe.serve_labels
    indices = serve_indices(trained, served)
    data = load(args.data, served)
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(recipe, len(trained))
        model.load_weights(str(args.run_dir / "best.weights.h5"))

        @tf.function
        def serve(image: tf.Tensor, model: keras.Model = model) -> tf.Tensor:
            logits = flip_averaged_logits(model, tf.cast(image, tf.float32))
            return tf.nn.softmax(tf.gather(tf.cast(logits, tf.float32), indices, axis=1))

        batch = tf.constant(data.images[:32])
        for _ in range(5):  # warm-up: tracing and allocation
            serve(batch).numpy()
        seconds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            serve(batch).numpy()
            seconds.append(time.perf_counter() - started)
        predicted = np.concatenate(
            [serve(tf.constant(data.images[i : i + 256])).numpy().argmax(1) for i in range(0, len(data), 256)]
        )
        report = {
            "policy": policy,
            "ms_per_face_batch32_p50": round(statistics.median(seconds) * 1000 / 32, 3),
            "accuracy": round(float((predicted == data.targets).mean()), 4),
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
