"""`emostream deploy`: list, publish and roll back model versions under a model base path.

Both TF Serving and the project's server serve the newest numbered version and
watch the base path, so deploying is a folder appearing in one rename, and
rolling back is the newer folders leaving it (into `<base>/.retired/`, which
neither server reads, since they load numeric folder names only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from emostream.settings import OneLineParser
from emostream_trainer.export import MODEL_CARD, RETIRED, next_version, numbered_versions


class DeployError(RuntimeError):
    """A deploy step that would leave serving in a bad state; nothing was changed."""


def card(folder: Path) -> dict[str, Any]:
    path = folder / "assets" / MODEL_CARD
    return json.loads(path.read_text()) if path.is_file() else {}


def listing(base: Path) -> list[dict[str, Any]]:
    versions = numbered_versions(base)
    rows = []
    for version in versions:
        info = card(base / str(version))
        rows.append(
            {
                "version": version,
                "serving": version == versions[-1],
                "validation_accuracy": info.get("validation_accuracy"),
                "labels": info.get("labels"),
                "code_revision": info.get("code_revision"),
            }
        )
    return rows


def publish(source: Path, base: Path, force: bool = False) -> Path:
    """Copy a SavedModel folder in as the next version; refuse a worse validation accuracy unless forced."""
    if not (source / "saved_model.pb").is_file():
        raise DeployError(f"{source}: not a SavedModel folder (no saved_model.pb)")
    versions = numbered_versions(base)
    if versions and not force:
        new, current = (
            card(source).get("validation_accuracy"),
            card(base / str(versions[-1])).get("validation_accuracy"),
        )
        if new is not None and current is not None and new < current:
            raise DeployError(
                f"{source} has validation accuracy {new:.4f} < serving version {versions[-1]}'s "
                f"{current:.4f}; pass --force to publish it anyway"
            )
    number = next_version(base)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{number}-", dir=base))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    card_path = staging / "assets" / MODEL_CARD
    if card_path.is_file():  # the card names the version it is published as
        card_path.write_text(json.dumps({**card(staging), "version": number}, indent=2) + "\n")
    staging.chmod(0o755)
    final = base / str(number)
    staging.rename(final)
    return final


def rollback(base: Path, to: int | None = None) -> int:
    """Retire every version newer than `to` (default: the one before the newest); return the one now served."""
    versions = numbered_versions(base)
    if len(versions) < 2 and to is None:
        raise DeployError(f"{base}: nothing to roll back to (versions: {versions})")
    target = to if to is not None else versions[-2]
    if target not in versions:
        raise DeployError(f"{base}: no version {target} (versions: {versions})")
    retired = base / RETIRED
    retired.mkdir(exist_ok=True)
    for version in (v for v in versions if v > target):
        destination = retired / str(version)
        if destination.exists():
            shutil.rmtree(destination)
        (base / str(version)).rename(destination)
    return target


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="emostream deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="versions, newest last, with their validation accuracy")
    publish_parser = commands.add_parser("publish", help="copy a SavedModel folder in as the next version")
    publish_parser.add_argument("source", type=Path)
    publish_parser.add_argument("--force", action="store_true", help="publish even if less accurate")
    rollback_parser = commands.add_parser("rollback", help="serve an earlier version again")
    rollback_parser.add_argument("--to", type=int, help="version to serve (default: the previous one)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(json.dumps(listing(args.model_base), indent=2))
        elif args.command == "publish":
            print(f"published {publish(args.source, args.model_base, args.force)}")
        else:
            print(
                f"serving version {rollback(args.model_base, args.to)} once the server notices "
                f"(seconds); retired versions are in {args.model_base / RETIRED}"
            )
    except DeployError as error:
        print(f"emostream deploy: {error}", file=sys.stderr)
        return 2
    return 0
