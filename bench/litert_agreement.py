"""How closely each LiteRT copy of a version answers as its SavedModel, on real faces.

    uv run python bench/litert_agreement.py [--model-base models/emotion] [--data ../shared/data/fer2013/validation]

For every numbered version with current copies (`emostream deploy compile` writes them), prints
one JSON line per copy: the share of faces it gives the SavedModel's label, its accuracy and the
SavedModel's on the version's own labels, and the largest probability difference. Both copies run
through the model server's own loader.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from emostream_modelserver.runtime import Compute
from emostream_modelserver.versions import load_version
from emostream_trainer.dataset import load
from emostream_trainer.evaluate_command import saved_model_predictor

from emostream.model_repository import litert_problem, numbered_versions, read_labels

BATCH = 64


def predict_all(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    return np.concatenate([predict(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    args = parser.parse_args()
    for version in numbered_versions(args.model_base):
        folder = args.model_base / str(version)
        problem = litert_problem(folder)
        if problem is not None:
            print(f"skipping version {version}: {problem}", file=sys.stderr)
            continue
        data = load(args.data, read_labels(folder))
        expected = predict_all(saved_model_predictor(folder), data.images)
        for precision in ("float32", "int8"):
            run = load_version(args.model_base, version, Compute("litert", precision), threads=2).predict
            got = predict_all(lambda crops, run=run: run(crops)["probabilities"], data.images)
            figures = {
                "version": version,
                "copy": precision,
                "faces": len(data),
                "same_label": round(float(np.mean(got.argmax(1) == expected.argmax(1))), 4),
                "accuracy": round(float(np.mean(got.argmax(1) == data.targets)), 4),
                "saved_model_accuracy": round(float(np.mean(expected.argmax(1) == data.targets)), 4),
                "max_abs_difference": round(float(np.max(np.abs(got - expected))), 4),
            }
            print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
