"""`emostream evaluate`: metrics, confusion matrix and calibration of a model on a labelled dataset.

The model is a SavedModel version folder, the newest (or a given) version under
a model base path, or a version served by TF Serving or the project's server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emostream import model_repository as repository
from emostream.model_repository import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME, ModelRepositoryError
from emostream.settings import OneLineParser
from emostream_trainer.dataset import DatasetError, load

Predict = Callable[[np.ndarray], np.ndarray]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="folder of class folders, or fer2013.csv")
    parser.add_argument("--usage", default="PublicTest", help="with a csv: which Usage rows to evaluate")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--saved-model", type=Path, help="a SavedModel version folder")
    source.add_argument("--serving-target", help="host:port of a running TF Serving or `emostream serve-model`")
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"), help="model base path")
    parser.add_argument("--model-name", default="emotion", help="with --serving-target: the served model")
    parser.add_argument("--version", type=int, help="with --model-base: this version instead of the newest")
    parser.add_argument("--out", type=Path, help="also write metrics.json and PNG plots here")
    parser.add_argument("--batch-size", type=int, default=256)


def read_version_folder(folder: Path) -> tuple[tuple[str, ...], dict[str, Any]]:
    return repository.read_labels(folder), repository.read_card(folder)


def saved_model_predictor(folder: Path) -> Predict:
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME]
    return lambda crops: serve(**{INPUT_KEY: tf.constant(crops)})[OUTPUT_KEY].numpy()


def resolve(args: argparse.Namespace) -> tuple[Predict, Path, str]:
    """The predictor, the version folder that holds its labels and card, and a description."""
    if args.serving_target:
        from emostream_serving.tf_serving import ServingClient

        client = ServingClient(args.serving_target, args.model_name)
        version = client.model_version()
        return (
            (lambda crops: client.predict(crops).probabilities),
            repository.version_folder(args.model_base, version),
            f"{args.model_name} version {version} at {args.serving_target}",
        )
    if args.saved_model:
        return saved_model_predictor(args.saved_model), args.saved_model, str(args.saved_model)
    versions = repository.numbered_versions(args.model_base)
    if not versions:
        raise DatasetError(f"{args.model_base}: no numbered model versions")
    version = args.version if args.version is not None else versions[-1]
    folder = repository.version_folder(args.model_base, version)
    return saved_model_predictor(folder), folder, str(folder)


def predict_all(predict: Predict, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from emostream_trainer.metrics import report

    predict, folder, description = resolve(args)
    labels, card = read_version_folder(folder)
    data = load(args.data, labels, usage=(args.usage,))
    result = report(predict_all(predict, data.images, args.batch_size), data.targets, labels)
    result = {"model": description, "data": str(args.data), **result}
    if args.out:
        write_outputs(result, card, args.out)
    return result


def write_outputs(result: dict[str, Any], card: dict[str, Any], out: Path) -> None:
    from emostream_trainer.plots import plot_confusion, plot_history

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_confusion(result["confusion_matrix"], result["labels"], out / "confusion_matrix.png")
    if card.get("history"):
        plot_history(card["history"], out / "training_curves.png")


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="emostream evaluate", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    from emostream_serving.tf_serving import ServingError

    try:
        result = evaluate(args)
    # OSError: TF's 'SavedModel file does not exist at ...'
    except (DatasetError, ModelRepositoryError, OSError, ServingError) as error:
        print(f"emostream evaluate: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0
