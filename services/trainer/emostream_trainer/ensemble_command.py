"""`emostream ensemble`: export the mean of several versions' probabilities as one new version.

One SavedModel that holds every member network, so the classifier still makes one
request per batch and the model contract (uint8 `image` in, `probabilities` out,
assets/labels.txt) is unchanged. The members' own flip averaging stays in their graphs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from emostream import model_repository as repository
from emostream.model_repository import INPUT_KEY, INPUT_SHAPE, OUTPUT_KEY, SIGNATURE_NAME, ModelRepositoryError
from emostream.settings import OneLineParser
from emostream_trainer.dataset import DatasetError, load
from emostream_trainer.evaluate_command import predict_all, read_version_folder, saved_model_predictor
from emostream_trainer.train_command import DEFAULT_MODEL_BASE, code_revision


def member_labels(members: list[Path]) -> tuple[str, ...]:
    """The first member's labels; every member must serve the same classes (in any order)."""
    if len(members) < 2:
        raise DatasetError(f"an ensemble needs at least two versions, got {len(members)}")
    labels, _ = read_version_folder(members[0])
    for folder in members[1:]:
        other, _ = read_version_folder(folder)
        if sorted(other) != sorted(labels):
            raise DatasetError(f"{folder} serves {list(other)} but {members[0]} serves {list(labels)}")
    return labels


def write_averaged_saved_model(members: list[Path], labels: tuple[str, ...], target: Path) -> None:
    """A SavedModel whose serving_default returns the members' mean probabilities, in `labels` order."""
    import tensorflow as tf

    from emostream_trainer.export import save_serving_function

    loaded = [tf.saved_model.load(str(folder)) for folder in members]
    orders = [[read_version_folder(folder)[0].index(label) for label in labels] for folder in members]

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name=INPUT_KEY)])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = [
            tf.gather(member.signatures[SIGNATURE_NAME](**{INPUT_KEY: image})[OUTPUT_KEY], order, axis=1)
            for member, order in zip(loaded, orders, strict=True)
        ]
        return {OUTPUT_KEY: tf.add_n(outputs) / len(outputs)}

    save_serving_function(serve.get_concrete_function(), target)


def member_summary(folder: Path) -> dict[str, Any]:
    _, card = read_version_folder(folder)
    keys = ("version", "validation_accuracy", "code_revision", "recipe", "trained_on")
    return {"folder": str(folder), **{key: card[key] for key in keys if key in card}}


def run(args: argparse.Namespace) -> int:
    from emostream_trainer.metrics import summary

    try:
        labels = member_labels(args.members)
        validation = load(args.validation, labels) if args.validation else None
    except (DatasetError, ModelRepositoryError, OSError) as error:
        print(f"emostream ensemble: {error}", file=sys.stderr)
        return 2
    card: dict[str, Any] = {
        "labels": list(labels),
        "ensemble_of": [member_summary(folder) for folder in args.members],
        "code_revision": code_revision(),
    }
    with tempfile.TemporaryDirectory(prefix="emostream-ensemble-") as built:
        write_averaged_saved_model(args.members, labels, Path(built))
        if validation is not None:  # scored as built, so the card describes the served graph
            probabilities = predict_all(saved_model_predictor(Path(built)), validation.images, 256)
            scores = summary(probabilities, validation.targets, labels)
            card.update(validation=str(args.validation), validation_accuracy=scores["accuracy"])
            card["validation_scores"] = scores
        from emostream_trainer.litert_export import compiling

        final = repository.publish(
            args.model_base, compiling(repository.copy_from(Path(built))), labels=labels, card=card
        )
    print(json.dumps({"exported": str(final), "validation_scores": card.get("validation_scores")}))
    from emostream_trainer.deploy_command import announce_candidate

    return announce_candidate(args, final, "emostream ensemble")


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="emostream ensemble", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("members", type=Path, nargs="+", help="SavedModel version folders (two or more)")
    parser.add_argument("--validation", type=Path, help="labelled folder or csv to score the ensemble on")
    parser.add_argument("--model-base", type=Path, default=DEFAULT_MODEL_BASE, help="where the version is exported")
    from emostream_trainer.deploy_command import add_candidate_arguments

    add_candidate_arguments(parser)
    return run(parser.parse_args(argv))
