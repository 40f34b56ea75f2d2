"""What averaging exported versions gains: each version alone and their mean, on a labelled folder.

    uv run python bench/ensemble.py models/emotion/1 runs/models-w24/1 [--data ../shared/data/fer2013/validation]

Scores the versions as served (flip averaging included) and the mean of their probabilities,
which is what `emostream train --teacher A --teacher B` distils from. Prints one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from emostream_trainer.dataset import load
from emostream_trainer.distill import teacher_probabilities
from emostream_trainer.evaluate_command import read_version_folder
from emostream_trainer.metrics import summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", type=Path, nargs="+", help="SavedModel version folders")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/validation"))
    args = parser.parse_args()
    labels, _ = read_version_folder(args.versions[0])
    data = load(args.data, labels)
    members = [teacher_probabilities([version], data) for version in args.versions]
    for version, probabilities in zip(args.versions, members, strict=True):
        print(json.dumps({"version": str(version), **summary(probabilities, data.targets, labels)}), flush=True)
    if len(members) > 1:
        mean = np.mean(members, axis=0)
        print(json.dumps({"ensemble": [str(v) for v in args.versions], **summary(mean, data.targets, labels)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
