"""`emostream train`: load data, fit, export the next model version with its card."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emostream.model_repository import ModelRepositoryError
from emostream.settings import OneLineParser
from emostream_trainer.dataset import (
    DEFAULT_LABELS,
    FER_CLASSES,
    Dataset,
    DatasetError,
    check_labels,
    load,
    split_holdout,
)
from emostream_trainer.recipe import DISTILL_WEIGHT, Recipe, add_recipe_arguments, flagged_values

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL_BASE = Path("models/emotion")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="folder of class folders (Kaggle layout) or fer2013.csv")
    parser.add_argument("--validation", type=Path, help="validation folder or csv (default: hold out of train)")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction held out when no --validation")
    parser.add_argument("--labels", default=",".join(DEFAULT_LABELS), help="served classes, in output order")
    parser.add_argument(
        "--train-on",
        choices=("served", "all"),
        default="served",
        help="train on the served classes only, or on all seven and serve the chosen ones",
    )
    add_recipe_arguments(parser)  # the defaults are the shipped model's recipe
    parser.add_argument("--no-class-weights", action="store_true")
    parser.add_argument(
        "--class-weight-power",
        type=float,
        default=None,
        help="class weight = (inverse class frequency) ** power; default 1 (full balance), 0.5 with --train-on all",
    )
    parser.add_argument(
        "--float32", action="store_true", help="train in float32 even where the CPU has bfloat16 (the default there)"
    )
    parser.add_argument(
        "--teacher",
        type=Path,
        action="append",
        default=[],
        help="a trained version folder to distil from (repeat for an ensemble); must know the trained classes",
    )
    parser.add_argument(
        "--distill-weight", type=float, default=DISTILL_WEIGHT, help="share of the target the teachers set"
    )
    parser.add_argument("--run-dir", type=Path, default=Path("runs/latest"), help="checkpoints; rerun to resume")
    parser.add_argument("--model-base", type=Path, default=DEFAULT_MODEL_BASE, help="where versions are exported")
    parser.add_argument("--no-export", action="store_true")
    from emostream_trainer.deploy_command import add_candidate_arguments

    add_candidate_arguments(parser)
    parser.add_argument("--quiet", action="store_true")


def default_class_weight_power(train_on: str) -> float:
    """Full balance for the served three; half-way (in log) for all seven, where disgust has 436 faces."""
    return 0.5 if train_on == "all" else 1.0


def code_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _load(args: argparse.Namespace, labels: tuple[str, ...]) -> tuple[Dataset, Dataset]:
    train_data = load(args.data, labels, usage=("Training",))
    if args.validation is not None:
        return train_data, load(args.validation, labels, usage=("PublicTest",))
    if args.data.suffix.lower() == ".csv":
        return train_data, load(args.data, labels, usage=("PublicTest",))
    return split_holdout(train_data, args.holdout, args.seed)


def _teacher_targets(teachers: list[Path], data: Dataset) -> np.ndarray | None:
    if not teachers:
        return None
    from emostream_trainer.distill import teacher_probabilities

    print(f"distilling from {', '.join(map(str, teachers))}", flush=True)
    return teacher_probabilities(teachers, data)


def recipe_of(args: argparse.Namespace, serve: tuple[str, ...]) -> Recipe:
    """The recipe the flags describe; with no flag it is the shipped model's (a test holds them equal)."""
    from emostream.cpu import computes_bfloat16

    return Recipe(
        **flagged_values(args),
        class_weights=not args.no_class_weights,
        class_weight_power=default_class_weight_power(args.train_on)
        if args.class_weight_power is None
        else args.class_weight_power,
        mixed_precision=computes_bfloat16() and not args.float32,
        teachers=tuple(str(path) for path in args.teacher),
        distill_weight=args.distill_weight if args.teacher else 0.0,
        serve_labels=serve,
    )


def run(args: argparse.Namespace, callbacks: Sequence[Any] = ()) -> int:
    """Train, evaluate and export as `args` say; `callbacks` (Keras callbacks) join the training loop."""
    from emostream_trainer.export import export_version, serving_copy
    from emostream_trainer.training import predict_served, serve_indices, train

    serve = tuple(label.strip() for label in args.labels.split(",") if label.strip())
    trained = FER_CLASSES if args.train_on == "all" else serve
    if not 0.0 <= args.distill_weight <= 1.0:
        print(f"emostream train: --distill-weight {args.distill_weight} is not between 0 and 1", file=sys.stderr)
        return 2
    try:
        check_labels(serve)  # with --train-on all, load() checks only the seven trained classes
        train_data, validation = _load(args, trained)
        soft_targets = _teacher_targets(args.teacher, train_data)
    # OSError: TF's 'SavedModel file does not exist at ...'; ModelRepositoryError: a teacher without labels
    except (DatasetError, ModelRepositoryError, OSError) as error:
        print(f"emostream train: {error}", file=sys.stderr)
        return 2
    print(f"train {train_data.class_counts()}\nvalidation {validation.class_counts()}", flush=True)
    recipe = recipe_of(args, serve)
    started = time.time()
    verbose = 0 if args.quiet else 1
    model = train(
        train_data, validation, recipe, args.run_dir, verbose=verbose, soft_targets=soft_targets, callbacks=callbacks
    )
    indices = serve_indices(trained, serve)
    served = [i for i, t in enumerate(validation.targets) if int(t) in indices]
    predicted = predict_served(model, validation.images[served].astype("float32"), indices, 256)
    expected = [indices.index(int(validation.targets[i])) for i in served]
    accuracy = float((predicted == expected).mean())
    print(f"validation accuracy on {list(serve)}: {accuracy:.4f}", flush=True)
    if args.no_export:
        return 0
    card = {
        "labels": list(serve),
        "trained_on": list(trained),
        "data": str(args.data),
        "validation": str(args.validation or f"holdout {args.holdout}"),
        "recipe": asdict(recipe),
        "validation_accuracy": accuracy,
        "train_seconds": round(time.time() - started),
        "code_revision": code_revision(),
        "history": _history(args.run_dir / "history.csv"),
    }
    final = export_version(serving_copy(model, len(trained), recipe), indices, serve, args.model_base, card)
    print(json.dumps({"exported": str(final), "validation_accuracy": accuracy}), flush=True)
    from emostream_trainer.deploy_command import announce_candidate

    return announce_candidate(args, final, "emostream train")


def main(argv: list[str], *, callbacks: Sequence[Any] = ()) -> int:
    parser = OneLineParser(prog="emostream train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv), callbacks)
