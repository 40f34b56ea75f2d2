"""The model repository: numbered SavedModel version folders under a TF Serving model base path.

One module for the model contract and the folder layout, shared by the classifier (labels),
the model server (what to load), the trainer (export) and `emostream deploy` (list, publish,
retire). It never imports TensorFlow, so commands that only touch folders start fast.

    <base>/<version>/saved_model.pb          the SavedModel TF Serving loads
    <base>/<version>/assets/labels.txt       class labels, one a line, in output order
    <base>/<version>/assets/model_card.json  how the version was made (JSON object)
    <base>/<version>/assets.extra/model.tflite       the same function compiled for LiteRT
    <base>/<version>/assets.extra/model.int8.tflite  the same with int8 weights (what the local server runs by default)
    <base>/<version>/assets.extra/model.tflite.json  what it was compiled from, and how closely it agrees
    <base>/.retired/<version>/               retired versions: never served, numbers stay taken
    <base>/.<version>-xxxx/                  a version being staged; servers skip hidden folders
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from emostream.errors import EmostreamError
from emostream.wire import CROP_SIZE

# The serving contract every version keeps: what the classifier sends and reads back.
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "image"
INPUT_DTYPE = "uint8"
"""Raw pixel values 0-255; any rescaling happens inside the model."""
INPUT_SHAPE = (CROP_SIZE, CROP_SIZE, 1)
"""One grey face crop; the batch dimension comes first."""
OUTPUT_KEY = "probabilities"
"""float32 [N, K], one column per label in labels.txt."""

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS = "assets"
LABELS_FILE = "labels.txt"
MODEL_CARD = "model_card.json"
RETIRED = ".retired"
LITERT_MODEL = "assets.extra/model.tflite"
"""The serving function compiled for LiteRT, which the local model server runs without TensorFlow.
TF Serving reads nothing in assets.extra but its warm-up file, so the folder stays a plain SavedModel."""
LITERT_INT8_MODEL = "assets.extra/model.int8.tflite"
"""The same function with int8 weights and activations quantized per face at run time (dynamic range)."""
LITERT_RECORD = "assets.extra/model.tflite.json"
"""JSON: `source_digest` (the SavedModel both copies were compiled from), and `max_abs_difference` and
`int8_max_abs_difference` (each copy's largest difference from the SavedModel on a probe batch)."""
LitertPrecision = Literal["float32", "int8"]
LITERT_MODELS: dict[LitertPrecision, str] = {"float32": LITERT_MODEL, "int8": LITERT_INT8_MODEL}


class ModelRepositoryError(EmostreamError):
    """A version folder is missing, unreadable or breaks the layout; the message names the path."""


def version_folder(base: Path, version: int) -> Path:
    return base / str(version)


def numbered_versions(base: Path) -> list[int]:
    """Version folders under `base` (published, loadable or not), oldest first."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def servable_versions(base: Path) -> list[int]:
    """Versions whose saved_model.pb is in place, newest first: what a server may load."""
    found = [v for v in numbered_versions(base) if (version_folder(base, v) / SAVED_MODEL_FILE).is_file()]
    return found[::-1]


def retired_versions(base: Path) -> list[int]:
    """Versions moved to `<base>/.retired`, oldest first."""
    return numbered_versions(base / RETIRED)


def next_version(base: Path) -> int:
    """One past every version ever published here, retired ones included: servers never see a number twice."""
    return max([0, *numbered_versions(base), *retired_versions(base)]) + 1


def read_labels(folder: Path) -> tuple[str, ...]:
    """Labels of a version folder in output order; ModelRepositoryError when missing or empty."""
    path = folder / ASSETS / LABELS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelRepositoryError(f"no labels for model version {folder.name}: {path} does not exist") from None
    except OSError as error:
        raise ModelRepositoryError(f"no labels for model version {folder.name}: {path}: {error.strerror}") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise ModelRepositoryError(f"no labels for model version {folder.name}: {path} is empty")
    return labels


def has_labels(folder: Path) -> bool:
    return (folder / ASSETS / LABELS_FILE).is_file()


def read_card(folder: Path) -> dict[str, Any]:
    """The version's model card, or {} when it has none."""
    path = folder / ASSETS / MODEL_CARD
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelRepositoryError(f"{path}: not a readable JSON model card: {error}") from None
    if not isinstance(card, dict):
        raise ModelRepositoryError(f"{path}: the model card must be a JSON object")
    return card


def write_card(folder: Path, card: dict[str, Any]) -> None:
    path = folder / ASSETS / MODEL_CARD
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(card, indent=2) + "\n")


def write_labels(folder: Path, labels: tuple[str, ...]) -> None:
    path = folder / ASSETS / LABELS_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{label}\n" for label in labels))


def publish(
    base: Path,
    write: Callable[[Path], None],
    *,
    labels: tuple[str, ...] | None = None,
    card: dict[str, Any] | None = None,
    version: int | None = None,
) -> Path:
    """Publish a new version in one rename: `write` fills a hidden staging folder with a SavedModel.

    `labels` and `card` (when given) are written beside it; a card always names its version.
    The number defaults to `next_version`; an existing number is never overwritten. On any
    failure the staging folder is removed and nothing appears under `base`.
    """
    base.mkdir(parents=True, exist_ok=True)
    number = version if version is not None else next_version(base)
    final = version_folder(base, number)
    if final.exists() or version_folder(base / RETIRED, number).exists():
        raise ModelRepositoryError(f"{final}: version {number} exists already; versions are never overwritten")
    staging = Path(tempfile.mkdtemp(prefix=f".{number}-", dir=base))
    try:
        write(staging)
        if not (staging / SAVED_MODEL_FILE).is_file():
            raise ModelRepositoryError(f"version {number} has no {SAVED_MODEL_FILE}: not a SavedModel")
        _finish(staging, number, labels, card)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _finish(staging: Path, number: int, labels: tuple[str, ...] | None, card: dict[str, Any] | None) -> None:
    if labels is not None:
        write_labels(staging, labels)
    if card is not None or (staging / ASSETS / MODEL_CARD).is_file():
        write_card(staging, {**read_card(staging), **(card or {}), "version": number})
    staging.chmod(0o755)


def copy_from(source: Path) -> Callable[[Path], None]:
    """A `write` for `publish` that copies an existing SavedModel folder."""
    if not (source / SAVED_MODEL_FILE).is_file():
        raise ModelRepositoryError(f"{source}: not a SavedModel folder (no {SAVED_MODEL_FILE})")

    def copy(staging: Path) -> None:
        shutil.copytree(source, staging, dirs_exist_ok=True)

    return copy


def saved_model_digest(folder: Path) -> str:
    """sha256 over saved_model.pb and the variables: it changes whenever the SavedModel does."""
    digest = hashlib.sha256()
    variables = sorted((folder / "variables").glob("*"))
    for path in [folder / SAVED_MODEL_FILE, *variables]:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def litert_problem(folder: Path, precision: LitertPrecision | None = None) -> str | None:
    """Why the version in `folder` has no usable LiteRT copy in `precision` (None: both) (missing,
    unreadable record, or compiled from another SavedModel); None when its copies are current."""
    record = folder / LITERT_RECORD
    for name in [LITERT_MODELS[precision]] if precision else LITERT_MODELS.values():
        if not (folder / name).is_file() or not record.is_file():
            return f"{folder} has no LiteRT copy ({name})"
    try:
        source = json.loads(record.read_text()).get("source_digest")
    except (OSError, ValueError, AttributeError) as error:
        lines = str(error).strip().splitlines()
        return f"{record}: not a readable compile record: {lines[0] if lines else type(error).__name__}"
    if source != saved_model_digest(folder):
        return f"{folder}: its LiteRT copy was compiled from another SavedModel"
    return None


def retire(base: Path, version: int) -> Path:
    """Move a version to `<base>/.retired` in one rename: servers stop seeing it, its number stays taken."""
    folder = version_folder(base, version)
    if not folder.is_dir():
        raise ModelRepositoryError(f"{base}: no version {version}")
    target = version_folder(base / RETIRED, version)
    if target.exists():
        raise ModelRepositoryError(f"{target} exists already")
    target.parent.mkdir(exist_ok=True)
    folder.rename(target)
    return target
