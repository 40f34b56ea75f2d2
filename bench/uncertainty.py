"""Choose the tracker's `uncertain` threshold on FER-2013 validation faces.

    uv run python bench/uncertainty.py [--data ../shared/data/fer2013/validation] [--model-base models/emotion]

Runs the newest shipped version on the validation faces of its classes and prints, per band of
top probability, how many faces fall there and how often the label is right. A track's smoothed
probability is the mean over its recent frames of one face, so on a still face it is that face's
probability; the chosen threshold is the lowest band edge above which every band is right more
often than wrong: below it, an event's label is more likely wrong than right, which is what
`uncertain` tells a subscriber.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BAND = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    args = parser.parse_args()
    from emostream_trainer.dataset import load
    from emostream_trainer.evaluate_command import predict_all, read_version_folder, saved_model_predictor

    from emostream.model_repository import numbered_versions

    version = numbered_versions(args.model_base)[-1]
    folder = args.model_base / str(version)
    labels, _ = read_version_folder(folder)
    data = load(args.data, labels, usage=("PublicTest",))
    probabilities = predict_all(saved_model_predictor(folder), data.images, 256)
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == data.targets
    rows = []
    for low in np.arange(0.30, 1.0, BAND):
        inside = (top >= low) & (top < low + BAND)
        if inside.any():
            rows.append(
                {
                    "from": round(float(low), 3),
                    "faces": int(inside.sum()),
                    "right": round(float(right[inside].mean()), 3),
                }
            )
    # The lowest edge from which on every band is right at least half the time.
    threshold = rows[-1]["from"]
    for row in reversed(rows):
        if row["right"] < 0.5:
            break
        threshold = row["from"]
    below = top < threshold
    print(json.dumps({"model": str(folder), "faces": len(top), "accuracy": round(float(right.mean()), 4)}))
    for row in rows:
        print(json.dumps(row))
    print(
        json.dumps(
            {
                "threshold": round(float(threshold), 3),
                "uncertain_share": round(float(below.mean()), 4),
                "accuracy_uncertain": round(float(right[below].mean()), 4) if below.any() else None,
                "accuracy_certain": round(float(right[~below].mean()), 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
