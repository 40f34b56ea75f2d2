"""The training recipe: every knob of one run, its defaults (the shipped model's), and the CLI flags made from it.

No TensorFlow here, so `emostream train --help` and the model card code start fast. The model
(`emostream_trainer.model`) and the command (`emostream_trainer.train_command`) take every default
from `Recipe`; nothing else states one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emostream_trainer.dataset import DEFAULT_LABELS

DISTILL_WEIGHT = 0.5
"""Share of the target the teachers set when `--teacher` is given (without teachers it is 0)."""


def _flag(default: Any, help: str) -> Any:
    """A recipe field that `emostream train` offers as a flag of the same name."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """Every knob of one training run; it is written into the model card. Defaults: models/emotion/2."""

    epochs: int = _flag(40, "passes over the training data")
    batch_size: int = _flag(64, "images per step")
    learning_rate: float = _flag(2e-3, "peak learning rate of the cosine schedule")
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    label_smoothing: float = _flag(0.1, "share of each one-hot target spread over the other classes")
    width: int = _flag(40, "filters in the first block (doubles per block)")
    first_block_convs: int = _flag(2, "convolutions at full 48x48 resolution (1 is the cheap network)")
    class_weights: bool = True
    class_weight_power: float = 1.0
    mixed_precision: bool = True
    seed: int = _flag(1337, "seed of every random generator: one seed, one model")
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.0
    serve_labels: tuple[str, ...] = DEFAULT_LABELS


DEFAULT = Recipe()
FLAGS = tuple(f for f in fields(Recipe) if "help" in f.metadata)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per flagged recipe field (`--first-block-convs`), with the recipe's default."""
    for item in FLAGS:
        default = getattr(DEFAULT, item.name)
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=f"{item.metadata['help']} ({default})")


def flagged_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flagged recipe fields as `add_recipe_arguments` parsed them."""
    return {item.name: getattr(args, item.name) for item in FLAGS}


def read_recipe(run_dir: Path) -> tuple[Recipe, tuple[str, ...]]:
    """The recipe and trained labels a run recorded in its recipe.json."""
    record = json.loads((run_dir / "recipe.json").read_text())
    trained = tuple(record.pop("trained_labels"))
    record.setdefault("first_block_convs", 2)  # the only architecture before the knob existed
    known = {f.name for f in fields(Recipe)}
    values: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value for key, value in record.items() if key in known
    }
    return Recipe(**values), trained
